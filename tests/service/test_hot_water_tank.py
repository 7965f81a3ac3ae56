"""The hot-water tank through its adapter alone: its part of the problem (golden), its dispatch and fallbacks,
its legionella memory, the draws it learns from a tank's history, its KPIs and its site-file checks."""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pandas as pd
import pytest

import optimizer as opt
from drivers.base import Quality, Reading
from gridctl.assets import AssetMemory, DispatchContext, ObservationBatch, ProblemContext, adapter_for
from gridctl.assets.hot_water_tank import DRAW_SERIES, RESERVE_SERIES, DrawModel, HotWaterTank, declared_l_per_h
from gridctl.config import SiteError, load_site
from gridctl.config import models as m
from gridctl.forecast.forecasts import Forecasts
from gridctl.policy import SitePolicy
from gridctl.runtime import PlannedSchedule
from gridctl.service.snapshot import Snapshot
from optimizer.hot_water import WATER_KWH_PER_L_K
from sim.physics.hot_water import DRAW_SERIES as SIMULATED_DRAWS

HERE = Path(__file__).parent
FLATS = HERE / "sites" / "dhw-flats"
GOLDEN = HERE / "golden" / "hot-water-tanks.json"


@pytest.fixture(scope="module")
def site() -> m.Site:
    return load_site(FLATS)


def _tank(site: m.Site, asset_id: str) -> HotWaterTank:
    adapter = adapter_for(next(a for a in site.assets if a.id == asset_id), site)
    assert isinstance(adapter, HotWaterTank)
    return adapter


def _snapshot(at: datetime, values: dict[str, float | bool], age: timedelta = timedelta(0)) -> Snapshot:
    readings = {a: Reading(a, at - age, v, Quality.GOOD) for a, v in values.items()}
    return Snapshot(at, MappingProxyType(readings), MappingProxyType({}))


def _forecasts(start: datetime, step: timedelta, series: dict[str, dict[str, list[float]]]) -> Forecasts:
    n = len(next(iter(next(iter(series.values())).values())))
    return Forecasts(start=start, step=step, n_steps=n, base_load_kw=[0.0] * n, outdoor_temperature_c=[3.0] * n,
                     irradiance_w_m2=[0.0] * n, import_price_eur_per_kwh=[0.2] * n,
                     export_price_eur_per_kwh=[0.0] * n, carbon_kg_per_kwh=[0.0] * n, series=series)


def _close(got: object, want: object, path: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for key, value in want.items():
            _close(got[key], value, f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{index}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, abs=1e-6), path
    else:
        assert got == want, path


# --------------------------------------------------------------------------- the problem (golden)


def test_the_adapter_builds_the_tanks_of_the_golden_case(site: m.Site) -> None:
    case = json.loads(GOLDEN.read_text())
    start = datetime.fromisoformat(case["start"])
    step = timedelta(minutes=case["step_minutes"])
    memory = AssetMemory()
    for asset_id, state in case["memory"].items():
        memory.of(asset_id).update({k: datetime.fromisoformat(v) for k, v in state.items()})
    n = len(case["draws_l_per_h"])
    series = {asset_id: {DRAW_SERIES: list(case["draws_l_per_h"]), RESERVE_SERIES: [case["reserve_l"]] * n}
              for asset_id in case["expected"]}
    ctx = ProblemContext(site, SitePolicy(), _snapshot(start, case["readings"]), _forecasts(start, step, series),
                         memory)
    for asset_id, expected in case["expected"].items():
        (built,) = _tank(site, asset_id).problem_assets(ctx)
        assert isinstance(built, opt.HotWaterTank)
        _close(built.model_dump(mode="json"), expected, asset_id)
        # It is a problem the optimiser takes as it is.
        problem = opt.Problem(start=start, n_steps=n, step_minutes=60, site=opt.Site(import_price_eur_per_kwh=0.2),
                              assets=[built])
        assert opt.solve(problem, opt.Settings(mip_gap=0.0)).has_solution


def test_without_a_learnt_forecast_the_declared_profile_and_reserve_apply(site: m.Site) -> None:
    tank = _tank(site, "water-heater-1")
    start = datetime(2026, 1, 15, 5, 0, tzinfo=UTC)  # a Thursday, 06:00 in Lille
    ctx = ProblemContext(site, SitePolicy(), _snapshot(start, {}),
                         _forecasts(start, timedelta(hours=1), {"other": {"x": [0.0] * 24}}), AssetMemory())
    (built,) = tank.problem_assets(ctx)
    heat_per_l = WATER_KWH_PER_L_K * 28.0
    local = [(start + timedelta(hours=k, minutes=30)).astimezone(site.tz) for k in range(24)]
    assert built.draw_kwh == pytest.approx([declared_l_per_h(tank.asset, t) * heat_per_l for t in local])
    assert sum(built.draw_kwh) == pytest.approx(140 * heat_per_l)  # the day's declared 140 l at 40 °C
    # No reading: the tank is planned from the middle of its range (it is on its safe default anyway).
    assert built.initial_temperature_c == 55.0
    # Nobody has seen it disinfected: a cycle is due within a day.
    assert built.legionella_due_by == start + timedelta(hours=24)
    assert max(built.min_temperature_c) > 45.0 and min(built.min_temperature_c) == pytest.approx(45.0, abs=0.5)


# --------------------------------------------------------------------------- dispatch


def _planned(start: datetime, columns: dict[str, list[float]]) -> PlannedSchedule:
    index = pd.DatetimeIndex([start + timedelta(minutes=15) * k for k in range(4)])
    schedule = opt.Schedule(setpoints=pd.DataFrame(columns, index=index), objective={}, violations=[],
                            status="optimal", solver="test", mip_gap=0.0, build_s=0.0, solve_s=0.0)
    return PlannedSchedule("s1", "dhw-flats", start, start + timedelta(hours=2), 1, schedule)


def _follow(site: m.Site, asset_id: str, now: datetime, readings: dict[str, float | bool],
            power_kw: list[float], temperature_c: list[float], correct: bool = True) -> dict[str, object]:
    tank = _tank(site, asset_id)
    start = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
    planned = _planned(start, {f"{asset_id}.power_kw": power_kw, f"{asset_id}.temperature_c": temperature_c})
    frame = planned.schedule.setpoints
    row = frame.iloc[int(frame.index.searchsorted(pd.Timestamp(now), side="right")) - 1]
    ctx = DispatchContext(site, _snapshot(now, readings), now, lambda _t: True, "schedule s1", "gridctl:optimizer",
                          planned, row, correct=correct)
    return {r.address: r.value for r in tank.follow(ctx)}


def test_the_relay_heats_for_the_planned_share_of_the_step_up_to_the_planned_temperature(site: m.Site) -> None:
    start = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
    plan = ([2.4, 1.2, 0.0, 0.0], [50.0, 52.0, 51.8, 51.6])
    relay = "dhw-1/heater-relay"
    # Full power planned, the tank below the plan's temperature: on.
    assert _follow(site, "water-heater-1", start, {"dhw-1/tank-temperature": 47.0}, *plan)[relay] is True
    # Half power planned: on for the first half of the step only.
    second = start + timedelta(minutes=15)
    assert _follow(site, "water-heater-1", second + timedelta(minutes=5), {"dhw-1/tank-temperature": 50.0},
                   *plan)[relay] is True
    assert _follow(site, "water-heater-1", second + timedelta(minutes=10), {"dhw-1/tank-temperature": 50.0},
                   *plan)[relay] is False
    # Already at the plan's temperature (fewer draws than forecast): off.
    assert _follow(site, "water-heater-1", second, {"dhw-1/tank-temperature": 52.1}, *plan)[relay] is False
    # Just under it with the relay off: it stays off (no chatter on the probe's noise); on, it stays on.
    assert _follow(site, "water-heater-1", second, {"dhw-1/tank-temperature": 51.9, relay: False}, *plan)[relay] \
        is False
    assert _follow(site, "water-heater-1", second, {"dhw-1/tank-temperature": 51.9, relay: True}, *plan)[relay] is True
    # No heat planned, but more was drawn than forecast: 2 K under the minimum heats at once ...
    later = start + timedelta(minutes=35)
    assert _follow(site, "water-heater-1", later, {"dhw-1/tank-temperature": 42.9}, *plan)[relay] is True
    assert _follow(site, "water-heater-1", later, {"dhw-1/tank-temperature": 43.5}, *plan)[relay] is False
    # ... unless the plan is followed as made (the oracle's).
    assert _follow(site, "water-heater-1", later, {"dhw-1/tank-temperature": 42.9}, *plan, correct=False)[relay] \
        is False


def test_a_setpoint_tank_is_sent_to_its_maximum_to_heat_and_to_its_minimum_not_to(site: m.Site) -> None:
    start = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
    plan = ([0.6, 0.0, 0.0, 0.0], [49.0, 48.8, 48.6, 48.4])
    heat = _follow(site, "water-heater-4", start, {"hpwh-4/tank-temperature": 47.0}, *plan)
    idle = _follow(site, "water-heater-4", start + timedelta(minutes=20), {"hpwh-4/tank-temperature": 48.9}, *plan)
    assert heat == {"hpwh-4/setpoint": 65.0} and idle == {"hpwh-4/setpoint": 45.0}


def test_safe_default_and_baseline_are_the_off_peak_contactor(site: m.Site) -> None:
    tank, heat_pump = _tank(site, "water-heater-1"), _tank(site, "water-heater-4")
    for local_hour, on in ((23, True), (3, True), (6, False), (12, False), (21, False)):
        now = datetime(2026, 1, 15, local_hour, 10, tzinfo=site.tz).astimezone(UTC)
        ctx = DispatchContext(site, _snapshot(now, {}), now, lambda _t: False, "no valid schedule", "gridctl:fallback")
        assert [r.value for r in tank.safe_default(ctx)] == [on], local_hour
        assert [r.value for r in tank.baseline(ctx)] == [on], local_hour
        assert [r.value for r in heat_pump.safe_default(ctx)] == [65.0 if on else 45.0], local_hour
    # A tank whose contactor has its own hours.
    own = tank.asset.model_copy(update={"contactor_windows": [m.TimeWindow(start="12:00", end="14:00")]})
    noon = datetime(2026, 1, 15, 12, 30, tzinfo=site.tz).astimezone(UTC)
    ctx = DispatchContext(site, _snapshot(noon, {}), noon, lambda _t: False, "baseline", "baseline")
    assert [r.value for r in HotWaterTank(own, site).baseline(ctx)] == [True]


def test_a_stale_tank_temperature_puts_the_tank_on_its_contactor(site: m.Site) -> None:
    from gridctl.service import planner

    now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    start = now - timedelta(minutes=10)
    planned = _planned(start, {"water-heater-1.power_kw": [2.4] * 4, "water-heater-1.temperature_c": [60.0] * 4})
    snapshot = Snapshot(now, MappingProxyType({"dhw-1/tank-temperature": Reading(
        "dhw-1/tank-temperature", now - timedelta(minutes=10), 50.0, Quality.GOOD)}),
        MappingProxyType({"dhw-1": timedelta(minutes=3)}))
    result = planner.plan(site, planned, snapshot, now, lambda _t: False)
    assert result.stale["water-heater-1"] == ["dhw-1/tank-temperature"]
    relay = next(r for r in result.requests if r.address == "dhw-1/heater-relay")
    assert relay.actor == "gridctl:fallback" and relay.value is False  # 13:00 in Lille: peak hours


# --------------------------------------------------------------------------- legionella


def test_the_legionella_cycle_is_due_a_period_after_the_tank_was_last_seen_hot(site: m.Site) -> None:
    tank = _tank(site, "water-heater-1")
    memory = AssetMemory()
    t0 = datetime(2026, 1, 12, 0, 0, tzinfo=UTC)
    tank.observe(_snapshot(t0, {"dhw-1/tank-temperature": 55.0}), memory)
    assert tank.legionella_due(memory, t0) == t0 + timedelta(hours=24)
    # Within the probe's tolerance of 60 °C is not a cycle; the plan's 61 °C is.
    tank.observe(_snapshot(t0 + timedelta(hours=5), {"dhw-1/tank-temperature": 60.3}), memory)
    assert tank.legionella_due(memory, t0) == t0 + timedelta(hours=24)
    tank.observe(_snapshot(t0 + timedelta(hours=6), {"dhw-1/tank-temperature": 61.0}), memory)
    assert tank.legionella_due(memory, t0) == t0 + timedelta(hours=6, days=7)
    # A stale reading tells nothing.
    tank.observe(_snapshot(t0 + timedelta(days=1), {"dhw-1/tank-temperature": 64.0}, age=timedelta(days=1)),
                 AssetMemory())
    stale = AssetMemory()
    snapshot = Snapshot(t0 + timedelta(days=1), MappingProxyType({"dhw-1/tank-temperature": Reading(
        "dhw-1/tank-temperature", t0, 64.0, Quality.GOOD)}), MappingProxyType({"dhw-1": timedelta(minutes=3)}))
    tank.observe(snapshot, stale)
    assert "legionella_at" not in stale.of(tank.id)


def test_an_overdue_cycle_is_planned_at_once_and_reached(site: m.Site) -> None:
    tank = _tank(site, "water-heater-1")
    start = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    memory = AssetMemory()
    memory.of(tank.id)["legionella_at"] = start - timedelta(days=8)
    n = 8
    ctx = ProblemContext(site, SitePolicy(), _snapshot(start, {"dhw-1/tank-temperature": 50.0}),
                         _forecasts(start, timedelta(hours=1), {tank.id: {DRAW_SERIES: [0.0] * n,
                                                                          RESERVE_SERIES: [0.0] * n}}), memory)
    (built,) = tank.problem_assets(ctx)
    problem = opt.Problem(start=start, n_steps=n, step_minutes=60, site=opt.Site(import_price_eur_per_kwh=0.2),
                          assets=[built])
    schedule = opt.solve(problem, opt.Settings(mip_gap=0.0))
    temperatures = schedule.setpoints["water-heater-1.temperature_c"].tolist()
    # 11 K of a 200 l tank at 2.4 kW: reached by the end of the second hour.
    assert temperatures[1] >= 61.0 - 1e-6 and not [v for v in schedule.violations if not v.hard]


# --------------------------------------------------------------------------- draws learnt from history


def _history(tank: m.HotWaterTank, days: int, litres_at: dict[int, float], meter: bool, start: datetime,
             step: timedelta = timedelta(minutes=5)) -> list[tuple[datetime, dict[str, float]]]:
    """A tank's readings as its devices would give them: draws of litres at 40 °C at local hours, the heater
    keeping it at 55 °C, the site file's standing loss."""
    capacity = tank.volume_l * WATER_KWH_PER_L_K
    per_l = WATER_KWH_PER_L_K * (40.0 - tank.cold_water_temperature_c)
    hours = step.total_seconds() / 3600.0
    temperature, energy, volume = 55.0, 1000.0, 5000.0
    rows = []
    moment = start
    for _ in range(int(timedelta(days=days) / step)):
        local = moment.astimezone(ZONE)
        drawn_l = litres_at.get(local.hour, 0.0) * hours
        drawn_kwh = drawn_l * per_l
        loss = tank.standing_loss_w_per_k / 1000.0 * (temperature - tank.ambient_temperature_c) * hours
        # The heater brings it back to 55 °C within the step when it can.
        heat = min(max(drawn_kwh + loss + (55.0 - temperature) * capacity, 0.0), tank.heater.electric_power_kw * hours)
        before = temperature
        temperature += (heat - drawn_kwh - loss) / capacity
        energy += heat
        volume += drawn_l * (40.0 - tank.cold_water_temperature_c) / ((before + temperature) / 2
                                                                       - tank.cold_water_temperature_c)
        moment += step
        values = {"dhw-2/tank-temperature": temperature, "dhw-2/heater-energy": energy}
        if meter:
            values["dhw-2/drawn-volume"] = volume
        rows.append((moment, values))
    return rows


ZONE = load_site(FLATS).tz


@pytest.mark.parametrize("meter", [False, True], ids=["heat-balance", "water-meter"])
def test_draws_are_learnt_from_the_tanks_history_by_weekday_and_hour(site: m.Site, meter: bool) -> None:
    tank = _tank(site, "water-heater-2")
    asset = tank.asset if meter else tank.asset.model_copy(update={"points": {
        k: v for k, v in tank.asset.points.items() if k not in ("draw_volume", "outlet_temperature")}})
    model = DrawModel(HotWaterTank(asset, site), 8)
    start = datetime(2026, 1, 5, 0, 0, tzinfo=ZONE).astimezone(UTC)  # a Monday
    habit = {7: 40.0, 20: 60.0}  # litres at 40 °C in the 07:00 and 20:00 hours
    rows = _history(asset, 7, habit, meter, start)
    # Fed in batches, as the forecaster does.
    for first in range(0, len(rows), 96):
        chunk = rows[first:first + 96]
        model.learn(ObservationBatch([t for t, _ in chunk], [None] * len(chunk), {}, {}, False),
                    [model.sample(values.get) for _, values in chunk])
    profile = model.profile()
    wednesday = 2
    # A weekday hour seen 5 times on weekdays and once itself, against a 1-day prior of the declared profile.
    declared_7 = declared_l_per_h(asset, datetime(2026, 1, 7, 7, 0))
    typical = (5 * 40.0 + declared_7) / 6
    assert profile[(wednesday, 7)] == pytest.approx((40.0 + typical) / 2, rel=0.03)
    assert profile[(wednesday, 20)] > 50.0 and profile[(wednesday, 3)] < 3.0
    # Every day alike: a plan is ready for the default's heavier day only as far as the prior weighs.
    assert 1.0 < model.hedge() < 1.3
    assert model.reserve_l() == pytest.approx((7 * 0.5 * 60.0 + 2 * 0.2 * 110.0) / 9, rel=0.03)


def test_a_model_without_history_forecasts_the_declared_profile(site: m.Site) -> None:
    tank = _tank(site, "water-heater-1")
    model = DrawModel(tank, 8)
    assert model.profile()[(0, 20)] == pytest.approx(declared_l_per_h(tank.asset, datetime(2026, 1, 5, 20)))
    assert model.hedge() == pytest.approx(1.3) and model.reserve_l() == pytest.approx(0.2 * 140.0)


def test_the_simulation_and_the_adapter_name_the_draws_alike() -> None:
    assert SIMULATED_DRAWS == DRAW_SERIES


# --------------------------------------------------------------------------- KPIs


def test_kpis_from_the_historys_hourly_rollups(site: m.Site) -> None:
    tank = _tank(site, "water-heater-1")
    index = pd.date_range("2026-01-15T10:00Z", periods=6, freq="h")  # 11:00 .. 16:00 in Lille: peak hours
    series = {
        ("dhw-1/tank-temperature", "value_avg"): [50.0, 44.0, 42.5, 46.0, 58.0, 55.0],
        ("dhw-1/tank-temperature", "value_max"): [51.0, 45.0, 47.0, 59.0, 61.5, 61.6],
        ("dhw-1/heater-energy", "energy_kwh"): [0.0, 0.0, 1.0, 2.0, 2.0, 0.0],
    }
    parts = tank.history_kpis(lambda address, column: pd.Series(series[(address, column)], index=index))
    assert parts["hot_water_below_minimum"].value == pytest.approx(1.0 + 2.5)
    assert parts["hot_water_below_minimum_time"].value == 120.0
    assert parts["legionella_cycles"].value == 1.0
    assert parts["hot_water_energy"].value == pytest.approx(5.0)
    assert parts["hot_water_cost"].value == pytest.approx(5.0 * 0.2081)
    # The tank is a dwelling's: each part says so, for the API to withhold figures over few dwellings.
    assert {p.dwellings for p in parts.values()} == {1}


# --------------------------------------------------------------------------- site file


def _checked(tmp_path: Path, file: str, edit: str, replacement: str) -> list[str]:
    folder = tmp_path / "flats"
    shutil.copytree(FLATS, folder)
    text = (folder / file).read_text()
    assert edit in text
    (folder / file).write_text(text.replace(edit, replacement, 1))
    try:
        load_site(folder)
    except SiteError as error:
        return [str(p) for p in error.problems]
    return []


@pytest.mark.parametrize(("file", "edit", "replacement", "message"), [
    ("site.yaml", "heater_command: dhw-1/heater-relay, ", "", "site.yaml:46: assets[1].points: a hot-water tank "
     "needs a command"),
    ("site.yaml", "heater_power: dhw-3/heater-power}", "}", "assets[3].points: a hot-water tank needs heater_power"),
    ("site.yaml", "dwelling: flat-1", "dwelling: flat-9", "assets[1].dwelling: unknown dwelling 'flat-9'"),
    ("site.yaml", "heater: {electric_power_kw: 2.4}", "heater: {electric_power_kw: 2.4, cop: 3}",
     "assets[1].heater: Value error, a resistive element turns each kWh into one kWh of heat: cop must be 1"),
    ("site.yaml", "    ambient_temperature_c: 17\n", "    ambient_temperature_c: 17\n    max_temperature_c: 58\n",
     "legionella.temperature_c must be above min_temperature_c"),
    ("site.yaml", "building: house, floor_area_m2: 84", "building: annex, floor_area_m2: 84", "unknown building"),
    ("maps/hp-water-heater.yaml", "min: 40, max: 65}", "min: 40, max: 55}",
     "assets[4].points.setpoint: setpoint hpwh-4/setpoint takes 40–55 °C; the tank needs 45–61 °C"),
])
def test_site_file_problems_of_a_tank_are_located(tmp_path: Path, file: str, edit: str, replacement: str,
                                                   message: str) -> None:
    problems = _checked(tmp_path, file, edit, replacement)
    assert any(message in p for p in problems), problems


def test_units_of_volume() -> None:
    from gridctl.config.units import Quantity, quantity_of, to_internal

    assert quantity_of("L") is Quantity.VOLUME and to_internal(1.5, "m3") == 1500.0
    assert math.isclose(to_internal(250, "L"), 250.0)
