"""The heated zone's setpoints through its adapter: they keep the policy's comfort margin inside the bands in
force (the policy's bands and occupied hours, not only the site file's), so that the room, not only its
sensor, stays in the band."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pandas as pd
import pytest

import optimizer as opt
from gridctl.assets import DispatchContext, adapter_for
from gridctl.assets.thermal_zone import ThermalZone, planning_bands
from gridctl.config import load_site
from gridctl.config import models as m
from gridctl.policy import SitePolicy
from gridctl.runtime import PlannedSchedule
from gridctl.service.snapshot import Snapshot
from tests.dispatch.rig import SITES

ZONE = "gym-hall"  # occupied Monday to Friday 08:00-22:00, comfort 16-22 °C occupied, 12-26 °C not
MONDAY_NOON = datetime(2026, 1, 12, 11, 0, tzinfo=UTC)
MONDAY_NIGHT = datetime(2026, 1, 12, 23, 0, tzinfo=UTC)


def _policy(**fields: Any) -> SitePolicy:
    """A policy as the API receives it (JSON)."""
    return SitePolicy.model_validate_json(json.dumps(fields))


@pytest.fixture(scope="module")
def site() -> m.Site:
    return load_site(SITES / "zac-saint-sauveur")


def _setpoint(site: m.Site, now: datetime, power_kw: float, temperature_c: float,
              policy: SitePolicy | None) -> float:
    zone = adapter_for(next(a for a in site.assets if a.id == ZONE), site)
    assert isinstance(zone, ThermalZone)
    index = pd.DatetimeIndex([now - timedelta(minutes=15) + timedelta(minutes=15) * k for k in range(4)])
    frame = pd.DataFrame({f"{ZONE}.power_kw": [power_kw] * 4, f"{ZONE}.temperature_c": [temperature_c] * 4},
                         index=index)
    schedule = opt.Schedule(setpoints=frame, objective={}, violations=[], status="optimal", solver="test",
                            mip_gap=0.0, build_s=0.0, solve_s=0.0)
    planned = PlannedSchedule("s1", site.id, index[0], index[0] + timedelta(hours=2), 1, schedule)
    ctx = DispatchContext(site, Snapshot(now, MappingProxyType({}), MappingProxyType({})), now, lambda _t: False,
                          "schedule s1", "gridctl:optimizer", planned, frame.iloc[1], policy=policy)
    (request,) = zone.follow(ctx)
    return float(request.value)


def test_the_plans_keep_the_margin_inside_the_bands(site: m.Site) -> None:
    zone = next(a for a in site.assets if a.id == ZONE)
    assert isinstance(zone, m.ThermalZone)
    assert planning_bands(zone, SitePolicy()) == ((16.5, 21.5), (12.5, 25.5))
    assert planning_bands(zone, SitePolicy(comfort_margin_k=0.0)) == ((16.0, 22.0), (12.0, 26.0))
    narrow = _policy(comfort={ZONE: {"occupied": {"min_temperature_c": 20.0, "max_temperature_c": 20.5}}})
    assert planning_bands(zone, narrow)[0] == (20.25, 20.25)  # narrower than twice the margin: its middle


def test_a_coasting_zone_gets_the_floor_plus_the_margin(site: m.Site) -> None:
    # The plan lets the hall float on its gains: the local controller gets the band's floor, plus the margin.
    assert _setpoint(site, MONDAY_NOON, 0.0, 16.8, SitePolicy()) == 16.5
    assert _setpoint(site, MONDAY_NOON, 0.0, 16.8, SitePolicy(comfort_margin_k=0.0)) == 16.0
    assert _setpoint(site, MONDAY_NIGHT, 0.0, 14.0, SitePolicy()) == 12.5
    # Heating toward a planned temperature inside the band: that temperature.
    assert _setpoint(site, MONDAY_NOON, 12.0, 18.3, SitePolicy()) == 18.3
    assert _setpoint(site, MONDAY_NOON, 12.0, 21.9, SitePolicy()) == 21.5


def test_setpoints_follow_the_policys_bands_and_hours_not_only_the_site_files(site: m.Site) -> None:
    policy = _policy(comfort={ZONE: {
        "occupied": {"min_temperature_c": 18.0, "max_temperature_c": 21.0},
        "occupied_hours": [{"start": "06:00", "end": "23:59", "days": ["mon"]}]}})
    assert _setpoint(site, MONDAY_NOON, 0.0, 18.6, policy) == 18.5
    # 00:00 local on Tuesday is outside the policy's hours: the unoccupied band's floor.
    assert _setpoint(site, MONDAY_NIGHT, 0.0, 14.0, policy) == 12.5
    # 23:30 local on Monday is occupied by the policy's hours, not by the site file's (08:00-22:00).
    assert _setpoint(site, MONDAY_NIGHT - timedelta(minutes=30), 0.0, 18.2, policy) == 18.5
