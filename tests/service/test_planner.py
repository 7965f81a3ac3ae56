"""Between plans: a car the schedule does not serve, a battery trimmed to the planned grid exchange, and PV
curtailment followed as an export cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pandas as pd
import pytest

import optimizer as opt
from drivers.base import Quality, Reading
from gridctl.config import load_site
from gridctl.config import models as m
from gridctl.runtime import PlannedSchedule
from gridctl.service import planner
from gridctl.service.snapshot import Snapshot

SITES = Path(__file__).resolve().parents[2] / "sites"
NOW = datetime(2026, 7, 8, 9, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)


@pytest.fixture(scope="module")
def site() -> m.Site:
    return load_site(SITES / "zac-union")


def _pool(site: m.Site) -> m.EvChargerPool:
    return next(a for a in site.assets if isinstance(a, m.EvChargerPool))


def _planned(site: m.Site, columns: dict[str, list[float]]) -> PlannedSchedule:
    index = pd.DatetimeIndex([NOW + STEP * k for k in range(4)])
    frame = pd.DataFrame({f"{c.id}.power_kw": [0.0] * 4 for c in _pool(site).chargers}, index=index)
    for column, values in columns.items():
        frame[column] = values
    schedule = opt.Schedule(setpoints=frame, objective={}, violations=[], status="Optimal", solver="test",
                            mip_gap=0.0, build_s=0.0, solve_s=0.0)
    return PlannedSchedule("s1", site.id, NOW - STEP, NOW + timedelta(hours=2), 1, schedule)


def _snapshot(site: m.Site, states: dict[str, int]) -> Snapshot:
    readings = {}
    for charger in _pool(site).chargers:
        address = charger.points["plug_state"]
        readings[address] = Reading(address, NOW, states.get(charger.id, 0), Quality.GOOD)
        # The pool follows a plan only while every charger's plug state and power are fresh.
        readings[charger.points["power"]] = Reading(charger.points["power"], NOW, 0.0, Quality.GOOD)
    return Snapshot(NOW, MappingProxyType(readings), MappingProxyType({}))


def _charger_powers(site: m.Site, result: planner.Plan) -> dict[str, float]:
    pool = _pool(site)
    by_address = {r.address: r.value for r in result.requests}
    return {c.id: round(by_address[c.points["current_limit"]] * c.voltage_v * c.phases / 1000.0, 1)
            for c in pool.chargers}


def test_a_car_the_plan_does_not_serve_charges_within_the_pools_headroom(site: m.Site) -> None:
    pool = _pool(site)
    planned = _planned(site, {
        "charger-01.power_kw": [22.0, 22.0, 0.0, 0.0],     # planned now
        "charger-03.power_kw": [0.0, 0.0, 11.0, 11.0],     # planned later: left waiting on purpose
        "site.import_kw": [60.0] * 4,
    })
    # 02 arrived after the plan; 04 is full; 05 to 24 are empty.
    snapshot = _snapshot(site, {"charger-01": 2, "charger-02": 1, "charger-03": 1, "charger-04": 3})
    result = planner.plan(site, planned, snapshot, NOW, lambda _t: False)
    powers = _charger_powers(site, result)
    charger_02 = next(c for c in pool.chargers if c.id == "charger-02")
    assert powers["charger-01"] == pytest.approx(22.0, abs=0.1)
    assert powers["charger-02"] == pytest.approx(charger_02.max_power_kw, abs=0.1)
    assert powers["charger-03"] == 0.0
    assert powers["charger-04"] == 0.0
    # The 20 empty chargers share what is left of the 200 kW pool, so an arriving car starts at once.
    left_kw = pool.pool_limit_kw - 22.0 - charger_02.max_power_kw
    empty = [f"charger-{n:02d}" for n in range(5, 25)]
    assert all(powers[c] == pytest.approx(left_kw / 20, abs=0.1) for c in empty)
    assert sum(powers.values()) <= pool.pool_limit_kw + 0.5


def test_unplanned_cars_share_what_the_import_limit_leaves(site: m.Site) -> None:
    planned = _planned(site, {"charger-01.power_kw": [22.0] * 4, "site.import_kw": [90.0] * 4})
    snapshot = _snapshot(site, {"charger-01": 2, "charger-02": 1, "charger-06": 2})
    # A demand-response event caps import at 100 kW: 10 kW are left for the two cars the plan ignores.
    result = planner.plan(site, planned, snapshot, NOW, lambda _t: False, import_limit_kw=100.0)
    powers = _charger_powers(site, result)
    assert powers["charger-02"] == pytest.approx(5.0, abs=0.1)
    assert powers["charger-06"] == pytest.approx(5.0, abs=0.1)
    assert powers["charger-01"] == pytest.approx(22.0, abs=0.1)
    # 6 kW left for two: 3 kW each is below the chargers' 6 A minimum, so neither is started.
    result = planner.plan(site, planned, snapshot, NOW, lambda _t: False, import_limit_kw=96.0)
    powers = _charger_powers(site, result)
    assert powers["charger-02"] == powers["charger-06"] == 0.0


def _battery_plan(site: m.Site, battery_kw: float, net_kw: float) -> PlannedSchedule:
    index = pd.DatetimeIndex([NOW + STEP * k for k in range(4)])
    frame = pd.DataFrame({"shared-battery.power_kw": [battery_kw] * 4, "site.net_kw": [net_kw] * 4}, index=index)
    schedule = opt.Schedule(setpoints=frame, objective={}, violations=[], status="Optimal", solver="test",
                            mip_gap=0.0, build_s=0.0, solve_s=0.0)
    return PlannedSchedule("s2", site.id, NOW - STEP, NOW + timedelta(hours=2), 1, schedule)


@pytest.mark.parametrize(("planned_kw", "planned_net_kw", "grid_kw", "battery_kw", "expected_kw"), [
    (-50.0, 10.0, -10.0, -50.0, -30.0),   # less load than forecast: discharge less rather than export
    (-50.0, 10.0, 30.0, -50.0, -50.0),    # more load: never discharge past the plan
    (-50.0, 10.0, -80.0, -50.0, 0.0),     # far less: stop, never turn to charging
    (40.0, -20.0, 10.0, 40.0, 10.0),      # less PV than forecast: charge less rather than import
    (40.0, -20.0, -60.0, 40.0, 40.0),     # more PV: charge as planned
])
def test_the_battery_trims_its_plan_to_keep_the_planned_grid_exchange(
        planned_kw: float, planned_net_kw: float, grid_kw: float, battery_kw: float, expected_kw: float) -> None:
    site = load_site(SITES / "zac-saint-sauveur")
    battery = next(a for a in site.assets if isinstance(a, m.BatteryAsset))
    readings = {address: Reading(address, NOW, value, Quality.GOOD) for address, value in (
        (site.grid.points["power"], grid_kw), (battery.points["power"], battery_kw), (battery.points["soc"], 50.0))}
    snapshot = Snapshot(NOW, MappingProxyType(readings), MappingProxyType({}))
    result = planner.plan(site, _battery_plan(site, planned_kw, planned_net_kw), snapshot, NOW, lambda _t: False)
    setpoint = next(r.value for r in result.requests if r.address == battery.points["power_setpoint"])
    assert setpoint == pytest.approx(expected_kw)


def test_a_plan_made_on_a_known_future_is_followed_untrimmed() -> None:
    site = load_site(SITES / "zac-saint-sauveur")
    battery = next(a for a in site.assets if isinstance(a, m.BatteryAsset))
    readings = {address: Reading(address, NOW, value, Quality.GOOD) for address, value in (
        (site.grid.points["power"], -10.0), (battery.points["power"], -50.0), (battery.points["soc"], 50.0))}
    snapshot = Snapshot(NOW, MappingProxyType(readings), MappingProxyType({}))
    result = planner.plan(site, _battery_plan(site, -50.0, 10.0), snapshot, NOW, lambda _t: False,
                          correct=False)
    assert next(r.value for r in result.requests if r.address == battery.points["power_setpoint"]) == -50.0


def test_empty_chargers_offer_nothing_under_a_plan_that_knows_every_arrival(site: m.Site) -> None:
    planned = _planned(site, {"charger-01.power_kw": [22.0] * 4, "site.import_kw": [60.0] * 4})
    snapshot = _snapshot(site, {"charger-01": 2, "charger-02": 1})
    powers = _charger_powers(site, planner.plan(site, planned, snapshot, NOW, lambda _t: False, correct=False))
    assert powers["charger-02"] > 0.0  # a car the plan ignores is still served
    assert all(powers[f"charger-{n:02d}"] == 0.0 for n in range(3, 25))


def _stale_plug_snapshot(site: m.Site, states: dict[str, int], stale: str) -> Snapshot:
    """Fresh readings of every charger, except `stale`'s, last read ten minutes ago (empty then)."""
    readings = dict(_snapshot(site, states).readings)
    for charger in _pool(site).chargers:
        if charger.id == stale:
            for role in ("plug_state", "power"):
                address = charger.points[role]
                readings[address] = Reading(address, NOW - timedelta(minutes=10), 0, Quality.GOOD)
    return Snapshot(NOW, MappingProxyType(readings), MappingProxyType({stale: timedelta(seconds=30)}))


@pytest.mark.parametrize(("pool_limit_kw", "expected_a"), [
    (200.0, {"charger-01": 32.0, "charger-02": 32.0, "charger-03": 32.0}),  # room for all: each its maximum
    (30.0, {"charger-01": 14.4, "charger-02": 14.5, "charger-03": 14.5}),   # 10 kW each, 0.1 A steps down
    (10.0, {"charger-01": 6.0, "charger-02": 6.0, "charger-03": 0.0}),      # below the minimum: who fits
])
def test_a_pool_with_a_stale_charger_shares_its_limit_among_the_chargers_that_may_hold_a_car(
        site: m.Site, pool_limit_kw: float, expected_a: dict[str, float]) -> None:
    pool = _pool(site).model_copy(update={"pool_limit_kw": pool_limit_kw})
    narrow = site.model_copy(update={"assets": [pool if a.id == pool.id else a for a in site.assets]})
    planned = _planned(narrow, {"charger-01.power_kw": [22.0] * 4, "site.import_kw": [60.0] * 4})
    # Cars on 01 and 02; 03 has not answered for ten minutes (it was empty then, a car may be there now).
    snapshot = _stale_plug_snapshot(narrow, {"charger-01": 2, "charger-02": 1}, stale="charger-03")
    result = planner.plan(narrow, planned, snapshot, NOW, lambda _t: False)
    assert result.fallbacks[pool.id] == "stale input charger-03/plug-state, charger-03/power"
    assert result.stale[pool.id] == ["charger-03/plug-state", "charger-03/power"]
    currents = {r.address.partition("/")[0]: r.value for r in result.requests if r.address.endswith("/current-limit")}
    assert currents == {c.id: expected_a.get(c.id, 0.0) for c in pool.chargers}
    assert all(r.actor == "gridctl:fallback" for r in result.requests if r.address.endswith("/current-limit"))
    power_kw = sum(amps * c.voltage_v * c.phases / 1000.0 for c in pool.chargers for amps in [currents[c.id]])
    assert power_kw <= pool_limit_kw


def _pv_plan(site: m.Site, power_kw: float, curtailed_kw: float, export_kw: float) -> PlannedSchedule:
    index = pd.DatetimeIndex([NOW + STEP * k for k in range(4)])
    frame = pd.DataFrame({"canopy-pv.power_kw": [power_kw] * 4, "canopy-pv.curtailed_kw": [curtailed_kw] * 4,
                          "site.export_kw": [export_kw] * 4}, index=index)
    schedule = opt.Schedule(setpoints=frame, objective={}, violations=[], status="Optimal", solver="test",
                            mip_gap=0.0, build_s=0.0, solve_s=0.0)
    return PlannedSchedule("s3", site.id, NOW - STEP, NOW + timedelta(hours=2), 1, schedule)


@pytest.mark.parametrize(("power_kw", "curtailed_kw", "export_kw", "grid_kw", "producing_kw", "expected_pct"), [
    # The 200 kW export limit binds in the plan; the site draws 50 kW more than forecast: nothing is cut.
    (210.0, 10.0, 200.0, -150.0, 210.0, 100.0),
    # The same plan when the site exports 5 kW past the limit: 5 kW are cut (205 of the inverter's 220 kW).
    (210.0, 10.0, 200.0, -205.0, 210.0, 93.2),
    # A negative export price: the plan produces only the 100 kW the site was to use, but the site imports
    # 20 kW (more load than forecast): the array covers it, where a production cap would have cut it.
    (100.0, 120.0, 0.0, 20.0, 100.0, 54.5),
    # The plan does not curtail now: the array runs free whatever the meter says.
    (150.0, 0.0, 40.0, -250.0, 150.0, 100.0),
])
def test_a_planned_curtailment_caps_the_export_not_the_production(
        site: m.Site, power_kw: float, curtailed_kw: float, export_kw: float, grid_kw: float, producing_kw: float,
        expected_pct: float) -> None:
    pv = next(a for a in site.assets if isinstance(a, m.PvArray))
    readings = {address: Reading(address, NOW, value, Quality.GOOD) for address, value in (
        (site.grid.points["power"], grid_kw), (pv.points["power"], producing_kw))}
    snapshot = Snapshot(NOW, MappingProxyType(readings), MappingProxyType({}))
    result = planner.plan(site, _pv_plan(site, power_kw, curtailed_kw, export_kw), snapshot, NOW, lambda _t: False)
    limit = next(r.value for r in result.requests if r.address == pv.points["curtailment_limit"])
    assert limit == pytest.approx(expected_pct)


def test_without_a_grid_meter_reading_a_planned_curtailment_caps_the_production(site: m.Site) -> None:
    pv = next(a for a in site.assets if isinstance(a, m.PvArray))
    readings = {pv.points["power"]: Reading(pv.points["power"], NOW, 210.0, Quality.GOOD)}
    snapshot = Snapshot(NOW, MappingProxyType(readings), MappingProxyType({}))
    result = planner.plan(site, _pv_plan(site, 110.0, 110.0, 0.0), snapshot, NOW, lambda _t: False)
    limit = next(r.value for r in result.requests if r.address == pv.points["curtailment_limit"])
    assert limit == pytest.approx(50.0)
