"""Simulated hot water: the stratified tank, its heater and thermostat, a household's draws, and a water heater
served over Modbus that heats when its relay is written and falls back on the off-peak contactor."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from drivers.base import Driver
from drivers.factory import make_driver
from gridctl.config import load_site
from sim.core import SimClock
from sim.physics.hot_water import (
    WATER_KWH_PER_L_K,
    HotWaterHousehold,
    StratifiedTank,
    TankHeater,
    Thermostat,
    cold_water_temperature_c,
    litres_from_tank,
)
from sim.physics.plant import Plant
from sim.site import SiteSimulation, free_port_offset

FLATS = Path(__file__).resolve().parents[1] / "service" / "sites" / "dhw-flats"
PARIS = ZoneInfo("Europe/Paris")


def _stored_kwh(tank: StratifiedTank, cold_c: float) -> float:
    return tank.layer_kwh_per_k * sum(t - cold_c for t in tank.layers_c)


def test_a_draw_takes_the_top_first_and_carries_out_its_heat() -> None:
    tank = StratifiedTank.uniform(200.0, 0.002, 60.0)
    before = _stored_kwh(tank, 10.0)
    outlet, carried = [], 0.0
    for _ in range(400):  # 200 l in half-litre steps
        outlet.append(tank.upper_c)
        carried += WATER_KWH_PER_L_K * (tank.upper_c - 10.0) * 0.5
        tank.draw(0.5, 10.0)
    # The heat carried out by the water leaving at the top is what the tank lost.
    assert before - _stored_kwh(tank, 10.0) == pytest.approx(carried, rel=0.01)
    # Stratified: after half a tank the tap still runs hot while the bottom has gone cold; after two thirds
    # it is lukewarm.
    assert outlet[200] > 55.0 > 20.0 > tank.lower_c and outlet[267] < 50.0
    # One draw of 200 l is the same as four hundred of half a litre (a steady flow, solved exactly).
    whole = StratifiedTank.uniform(200.0, 0.002, 60.0)
    whole.draw(200.0, 10.0)
    assert whole.layers_c == pytest.approx(tank.layers_c, abs=1e-9)
    assert whole.lower_c == pytest.approx(10.0 + 50.0 * math.exp(-6.0))


def test_heat_enters_at_the_bottom_and_warmer_water_rises_to_its_level() -> None:
    tank = StratifiedTank(200.0, 0.002, [30.0, 40.0, 50.0, 55.0, 55.0, 60.0])
    stored = _stored_kwh(tank, 10.0)
    tank.heat(tank.layer_kwh_per_k * 5.0)
    assert tank.layers_c == [35.0, 40.0, 50.0, 55.0, 55.0, 60.0]
    # Heated past the layers above, the bottom mixes with them: 75 °C of bottom among 40 and 50 -> 55 each, then
    # with the two 55s, all below the 60 at the top.
    tank.heat(tank.layer_kwh_per_k * 40.0)
    assert tank.layers_c == pytest.approx([55.0, 55.0, 55.0, 55.0, 55.0, 60.0])
    assert _stored_kwh(tank, 10.0) == pytest.approx(stored + tank.layer_kwh_per_k * 45.0)
    # To bring the bottom to 62 °C everything turns over: 5 layers by 5 K, then the whole tank by 2 K.
    assert tank.heat_to(62.0) == pytest.approx(tank.layer_kwh_per_k * (5 * 5.0 + 6 * 2.0))
    # Standing losses toward the room: UA 2 W/K, 200 l, a day in a 20 °C room.
    uniform = StratifiedTank.uniform(200.0, 0.002, 62.5)
    uniform.lose(86400.0, 20.0)
    expected = 20.0 + 42.5 * math.exp(-0.002 / (200.0 * WATER_KWH_PER_L_K) * 24.0)
    assert uniform.mean_c == pytest.approx(expected, abs=1e-6)


def test_mixed_at_the_tap_a_hotter_tank_gives_fewer_litres() -> None:
    assert litres_from_tank(40.0, 60.0, 10.0) == pytest.approx(24.0)
    assert litres_from_tank(40.0, 38.0, 10.0) == 40.0
    assert cold_water_temperature_c(datetime(2026, 2, 9, tzinfo=UTC)) == pytest.approx(8.0, abs=0.1)
    assert cold_water_temperature_c(datetime(2026, 8, 10, tzinfo=UTC)) == pytest.approx(17.0, abs=0.1)


def test_a_heat_pump_does_better_with_warmer_air_and_cooler_water() -> None:
    heater = TankHeater(0.5, carnot_share=0.3)
    assert heater.cop(20.0, 45.0) > heater.cop(7.0, 45.0) > heater.cop(7.0, 55.0) > 1.0
    assert TankHeater(2.4).cop(-5.0, 60.0) == 1.0
    thermostat = Thermostat(65.0, 7.0)
    assert thermostat.update(59.0, 65.0) is False  # within its differential, not called for yet
    assert thermostat.update(57.5, 65.0) is True
    assert thermostat.update(64.0, 65.0) is True and thermostat.update(65.0, 65.0) is False


def test_a_household_draws_its_habit_with_morning_and_evening_peaks() -> None:
    household = HotWaterHousehold("flat-1", seed=3, tz=PARIS, mean_daily_l_40c=120.0)
    again = HotWaterHousehold("flat-1", seed=3, tz=PARIS, mean_daily_l_40c=120.0)
    start = datetime(2026, 1, 5, tzinfo=PARIS)
    days = [household.demand_l_40c(start + timedelta(days=d), start + timedelta(days=d + 1)) for d in range(120)]
    assert days[:7] == [again.demand_l_40c(start + timedelta(days=d), start + timedelta(days=d + 1))
                        for d in range(7)]
    assert sum(days) / len(days) == pytest.approx(120.0, rel=0.1)
    # Days differ (some are heavy, some are away).
    assert max(days) > 1.5 * 120.0 and min(days) < 0.5 * 120.0
    # Over a few households, the morning (06–10 h) and the evening (18–23 h) draw well over the afternoon.
    by_hour = [0.0] * 24
    for key in range(8):
        other = HotWaterHousehold(f"flat-{key}", seed=3, tz=PARIS, mean_daily_l_40c=120.0)
        for d in range(60):
            for hour in range(24):
                moment = start + timedelta(days=d, hours=hour)
                by_hour[hour] += other.demand_l_40c(moment, moment + timedelta(hours=1))
    assert by_hour[3] < 0.02 * sum(by_hour)
    morning, evening, afternoon = sum(by_hour[6:10]) / 4, sum(by_hour[18:23]) / 5, sum(by_hour[14:17]) / 3
    assert morning > 1.5 * afternoon and evening > 1.5 * afternoon


def test_the_plant_draws_the_tanks_around_the_site_file() -> None:
    site = load_site(FLATS)
    for seed in range(1, 6):
        plant = Plant(site, seed)
        tank = plant.assets["water-heater-1"]
        assert tank["volume_l"].documented == 200.0 and 190.0 <= tank["volume_l"].true <= 210.0
        assert 2.16 <= tank["heater.electric_power_kw"].true <= 2.52
        assert abs(tank["max_temperature_c"].true - 65.0) <= 3.0
        assert "heater.carnot_share" in plant.assets["water-heater-4"]
    true_site = Plant(site, 1).true_site(site)
    heat_pump = next(a for a in true_site.assets if a.id == "water-heater-4")
    assert heat_pump.heater.cop != 2.8 and heat_pump.volume_l == Plant(site, 1).true("water-heater-4", "volume_l")


# --------------------------------------------------------------------------- served over Modbus


@pytest_asyncio.fixture
async def flats() -> AsyncIterator[tuple[SiteSimulation, SimClock, dict[str, Driver]]]:
    site = load_site(FLATS)
    # Tuesday 11:00 in Lille: peak hours, the contactor is open.
    clock = SimClock(datetime(2026, 1, 13, 10, 0, tzinfo=UTC))
    simulation = SiteSimulation(FLATS, clock, seed=4, port_offset=free_port_offset(site), instruments=False)
    await simulation.start(step_interval_s=3600.0)
    drivers = {d: make_driver(simulation.devices[d].spec) for d in ("dhw-1", "hpwh-4")}
    await asyncio.gather(*(driver.connect() for driver in drivers.values()))
    try:
        yield simulation, clock, drivers
    finally:
        await asyncio.gather(*(driver.close() for driver in drivers.values()))
        await simulation.stop()


def _advance(simulation: SiteSimulation, clock: SimClock, duration: timedelta) -> None:
    end = clock.now() + duration
    while clock.now() < end:
        clock.advance(timedelta(seconds=30))
        simulation.step()


async def _values(driver: Driver) -> dict[str, object]:
    return {r.address.partition("/")[2]: r.value for r in await driver.read()}


async def test_a_water_heater_heats_on_its_relay_and_falls_back_on_the_contactor(flats) -> None:
    simulation, clock, drivers = flats
    tank = simulation.physics.tanks["water-heater-1"]
    tank.tank.layers_c = [45.0] * len(tank.tank.layers_c)
    _advance(simulation, clock, timedelta(minutes=1))
    before = await _values(drivers["dhw-1"])
    assert before["heater-relay"] is False and before["heater-power"] == 0  # peak hours: contactor open
    # The installer's communication timeout: 15 min without a write, the relay is the contactor's again.
    assert (await drivers["dhw-1"].write("communication-timeout", 900)).read_back == 900
    assert (await drivers["dhw-1"].write("heater-relay", True)).read_back is True
    _advance(simulation, clock, timedelta(minutes=10))
    heating = await _values(drivers["dhw-1"])
    true_kw = simulation.physics.plant.true("water-heater-1", "heater.electric_power_kw")
    assert heating["heater-power"] == pytest.approx(true_kw * 1000.0, abs=1.0)
    assert heating["tank-temperature"] > before["tank-temperature"] + 1.0
    assert heating["heater-energy"] == pytest.approx(before["heater-energy"] + true_kw / 6.0, abs=0.02)
    # gridctl goes silent: after the communication timeout the relay follows the contactor again.
    _advance(simulation, clock, timedelta(minutes=6))
    fallen = await _values(drivers["dhw-1"])
    assert fallen["heater-relay"] is False and fallen["heater-power"] == 0
    # Into the off-peak hours the contactor closes on its own.
    _advance(simulation, clock, timedelta(hours=11))
    night = await _values(drivers["dhw-1"])
    assert night["heater-relay"] is True


async def test_the_tank_cools_as_the_household_draws(flats) -> None:
    simulation, clock, drivers = flats
    tank = simulation.physics.tanks["water-heater-4"]
    start_c = tank.tank.mean_c
    drawn = tank.drawn_l
    # A heat pump water heater told to stay at 45 °C heats no more while its household draws through the day.
    assert (await drivers["hpwh-4"].write("setpoint", 45.0)).read_back == 45.0
    _advance(simulation, clock, timedelta(hours=8))
    values = await _values(drivers["hpwh-4"])
    assert tank.drawn_l > drawn + 20.0
    assert values["tank-temperature"] < start_c - 2.0
    assert values["outlet-temperature"] >= values["tank-temperature"]
