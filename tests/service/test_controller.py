"""The control cycle's fallbacks with a clock that moves only when told: stale inputs, optimiser
failure and timeout, schedule expiry — and that a valid schedule reaches the devices."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import optimizer as opt
from drivers.base import DeviceHealth, HealthState, Quality, Reading
from gridctl.alarms import AlarmKind
from gridctl.clock import ManualClock
from gridctl.config import load_site
from gridctl.config.models import Site
from gridctl.dispatch import Outcome
from gridctl.fieldbus import device_spec
from gridctl.forecast.forecaster import SignalForecaster
from gridctl.forecast.forecasts import Forecasts
from gridctl.service.controller import ControllerKind, ControllerSettings, SiteController
from gridctl.service.snapshot import Snapshot
from sim.core import SimDevice
from tests.dispatch.simdriver import SimDeviceDriver

SITES = Path(__file__).resolve().parents[2] / "sites"
# A winter Tuesday morning in Lille, 09:00 local.
START = datetime(2026, 1, 13, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITES / "zac-saint-sauveur")


# What the demonstrator's sensors read at the start of a test.
SAINT_SAUVEUR_VALUES = {
    "grid-meter/power": 60.0, "battery/soc": 50.0, "gym-controller/hall-temperature": 17.5,
    "gym-controller/hall-illuminance": 120.0, "gym-controller/occupancy": True, "rooftop-pv-inverter/power": 20.0,
    "heat-substation/outdoor-temperature": 3.0,
    # Block B's water heaters, heated last night.
    **{f"dhw-b-{n:02d}/tank-temperature": 56.0 for n in range(1, 25)},
}


class Rig:
    def __init__(self, site: Site, forecaster=None, settings: ControllerSettings | None = None,
                 values: dict[str, object] | None = None) -> None:
        self.clock = ManualClock(START)
        self.devices = {d.id: SimDevice(device_spec(d), self.clock) for d in site.devices
                        if not d.id.startswith("meter-")}
        self.drivers = {i: SimDeviceDriver(dev, bacnet=site.device(i).protocol == "bacnet")
                        for i, dev in self.devices.items()}
        self.controller = SiteController(site, self.drivers, self.clock, forecaster or SignalForecaster(),
                                         settings=settings or ControllerSettings(
                                             solver=opt.Settings(time_limit_s=20, mip_gap=0.01)))
        for address, value in (SAINT_SAUVEUR_VALUES if values is None else values).items():
            self.set(address, value)

    def set(self, address: str, value: object) -> None:
        device_id, _, point_id = address.partition("/")
        self.devices[device_id].set(point_id, value)

    async def poll(self, skip: frozenset[str] = frozenset()) -> None:
        now = self.clock.now()
        for device_id, device in self.devices.items():
            if device_id in skip:
                continue
            readings = [Reading(f"{device_id}/{p}", now, v, Quality.GOOD) for p, v in device.values.items()]
            await self.controller.ingest(device_id, readings, DeviceHealth(device_id, HealthState.OK, now, None,
                                                                           None, 0))


async def test_a_schedule_reaches_every_actuator_through_the_arbiter(site: Site) -> None:
    rig = Rig(site)
    await rig.poll()
    planned = await rig.controller.optimise()
    assert planned is not None and planned.schedule.has_solution
    entries = await rig.controller.dispatch()
    written = {e.address for e in entries if e.outcome == Outcome.WRITTEN}
    assert {"battery/power-setpoint", "gym-controller/hall-setpoint", "gym-controller/lighting-dimming",
            "street-lighting/circuit-1-dimming", "rooftop-pv-inverter/curtailment-limit"} <= written
    assert all(e.schedule_id == planned.schedule_id for e in entries)
    assert rig.controller.last_fallbacks == {}
    # The hall is occupied at 09:00 and below its band: the plan heats toward it.
    assert rig.devices["gym-controller"].get("hall-setpoint") >= 16.0


async def test_stale_input_puts_only_that_asset_on_its_safe_default(site: Site) -> None:
    rig = Rig(site)
    await rig.poll()
    await rig.controller.optimise()
    rig.clock.advance(timedelta(minutes=10))
    # Every device polled again except the battery: its SOC is now 10 min old (> 3 × 5 s).
    now = rig.clock.now()
    for device_id, device in rig.devices.items():
        if device_id == "battery":
            continue
        readings = [Reading(f"{device_id}/{p}", now, v, Quality.GOOD) for p, v in device.values.items()]
        await rig.controller.ingest(device_id, readings, DeviceHealth(device_id, HealthState.OK, now, None, None, 0))
    entries = await rig.controller.dispatch()
    assert rig.controller.last_fallbacks == {"shared-battery": "stale input battery/soc"}
    battery = [e for e in entries if e.address == "battery/power-setpoint"]
    assert battery and battery[-1].actor == "gridctl:fallback" and battery[-1].written_value == 0.0
    assert rig.controller.alarms.is_active(AlarmKind.STALE_POINT, "shared-battery")
    others = [e for e in entries if e.address != "battery/power-setpoint"]
    assert others and all(e.actor == "gridctl:optimizer" for e in others)


class BrokenForecaster:
    async def forecast(self, site: Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts:
        raise RuntimeError("weather service unreachable")


class SlowForecaster(SignalForecaster):
    async def forecast(self, site: Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts:
        await asyncio.sleep(5)
        return await super().forecast(site, snapshot, start, n_steps, step)


async def test_optimiser_failure_keeps_the_last_schedule_until_it_expires_then_defaults(site: Site) -> None:
    rig = Rig(site)
    await rig.poll()
    first = await rig.controller.optimise()
    assert first is not None
    rig.controller.forecaster = BrokenForecaster()
    rig.clock.advance(timedelta(minutes=15))
    await rig.poll()
    assert await rig.controller.optimise() is first
    assert rig.controller.alarms.is_active(AlarmKind.OPTIMIZER_FAILED, site.id)
    entries = await rig.controller.dispatch()
    assert entries and all(e.schedule_id == first.schedule_id for e in entries if e.actor == "gridctl:optimizer")
    assert rig.controller.last_fallbacks == {}
    rig.clock.advance(timedelta(hours=2))
    await rig.poll()
    await rig.controller.dispatch()
    assert set(rig.controller.last_fallbacks) == {a.id for a in site.assets}
    assert set(rig.controller.last_fallbacks.values()) == {"schedule expired"}


async def test_optimiser_timeout_is_a_failure_not_a_hang(site: Site) -> None:
    rig = Rig(site, forecaster=SlowForecaster(), settings=ControllerSettings(optimise_timeout_s=0.2))
    await rig.poll()
    # The forecast alone takes 5 s against a 0.2 s budget for forecast + solve.
    result = await asyncio.wait_for(rig.controller.optimise(), timeout=4)
    assert result is None
    alarm = next(a for a in rig.controller.alarms.active() if a.kind == AlarmKind.OPTIMIZER_FAILED)
    assert "no schedule within 0.2 s" in alarm.message
    await rig.controller.dispatch()
    assert set(rig.controller.last_fallbacks.values()) == {"no valid schedule"}


async def test_device_offline_raises_and_clears_its_alarm(site: Site) -> None:
    rig = Rig(site)
    now = rig.clock.now()
    await rig.controller.ingest("battery", [Reading("battery/soc", now, None, Quality.BAD, "timeout")],
                                DeviceHealth("battery", HealthState.OFFLINE, None, "timeout", now, 3))
    assert rig.controller.alarms.is_active(AlarmKind.DEVICE_OFFLINE, "battery")
    await rig.poll()
    assert not rig.controller.alarms.is_active(AlarmKind.DEVICE_OFFLINE, "battery")


async def test_baseline_controller_runs_todays_rules_without_an_optimiser(site: Site) -> None:
    rig = Rig(site, settings=ControllerSettings(kind=ControllerKind.BASELINE))
    await rig.poll()
    assert await rig.controller.optimise() is None
    entries = await rig.controller.dispatch()
    by_address = {e.address: e for e in entries}
    # Thermostat schedule: occupied band floor (16 °C) + 1.
    assert by_address["gym-controller/hall-setpoint"].written_value == 17.0
    assert by_address["gym-controller/lighting-dimming"].written_value == 100.0
    # Self-consumption: 60 kW import with the battery idle → discharge, within its 100 kW limit.
    assert by_address["battery/power-setpoint"].written_value == -50.0  # ramped 50 kW/min from 0
    assert all(e.actor == "baseline" for e in entries)


async def test_a_charger_gone_silent_puts_its_pool_on_the_fallback_current_until_it_answers_again() -> None:
    union = load_site(SITES / "zac-union")
    pool = union.assets[0]
    assert pool.id == "silo-chargers"
    # Cars on chargers 01 and 03; charger 02 was empty when it last answered.
    rig = Rig(union, values={"grid-meter/power": 80.0, "charger-01/plug-state": 2, "charger-02/plug-state": 0,
                             "charger-03/plug-state": 1, "offices-ahu/return-temperature": 20.0})
    await rig.poll()
    assert await rig.controller.optimise() is not None
    await rig.controller.dispatch()
    assert "silo-chargers" not in rig.controller.last_fallbacks
    # Charger 02 stops answering; a minute later (over 3 polls of 10 s) its plug state and power are stale.
    rig.clock.advance(timedelta(minutes=1))
    now = rig.clock.now()
    await rig.controller.ingest("charger-02", [Reading("charger-02/plug-state", now, None, Quality.BAD, "timeout"),
                                               Reading("charger-02/power", now, None, Quality.BAD, "timeout")],
                                DeviceHealth("charger-02", HealthState.OFFLINE, None, "timeout", now, 3))
    await rig.poll(skip=frozenset({"charger-02"}))
    entries = await rig.controller.dispatch()
    assert rig.controller.alarms.is_active(AlarmKind.DEVICE_OFFLINE, "charger-02")
    stale = next(a for a in rig.controller.alarms.active()
                 if a.kind == AlarmKind.STALE_POINT and a.subject == "silo-chargers")
    assert "charger-02/plug-state" in stale.message and "charger-02/power" in stale.message
    assert rig.controller.last_fallbacks["silo-chargers"].startswith("stale input charger-02/plug-state")
    # Every charger of the pool on its fallback current: the 200 kW are shared by the two cars and the
    # charger that may hold one (66.7 kW each, capped at 32 A); the chargers known to be empty get 0 A.
    limits = {e.address: e for e in entries if e.address.endswith("/current-limit")}
    expected = {c.points["current_limit"]: 32.0 if c.id in ("charger-01", "charger-02", "charger-03") else 0.0
                for c in pool.chargers}
    assert {a: e.requested_value for a, e in limits.items()} == expected
    assert all(e.actor == "gridctl:fallback" for e in limits.values())
    # The other assets keep following the plan.
    assert any(e.actor == "gridctl:optimizer" for e in entries)
    # Charger 02 answers again: the alarm clears and the pool follows the plan.
    rig.clock.advance(timedelta(seconds=10))
    await rig.poll()
    entries = await rig.controller.dispatch()
    assert not rig.controller.alarms.is_active(AlarmKind.STALE_POINT, "silo-chargers")
    assert "silo-chargers" not in rig.controller.last_fallbacks
    assert all(e.actor == "gridctl:optimizer" for e in entries if e.address.endswith("/current-limit"))
