"""EV sessions: plug states read through their labels, and needs learnt from the pool's own sessions."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from drivers.base import Quality, Reading
from gridctl.assets import adapter_for
from gridctl.assets.base import DispatchContext
from gridctl.cli import main
from gridctl.config import load_site
from gridctl.config import models as m
from gridctl.forecast.ev import PRIOR_ENERGY_KWH, PRIOR_STAY, Plug, SessionHistory, ev_session
from gridctl.forecast.forecaster import SignalForecaster
from gridctl.service.snapshot import Snapshot

SITES = Path(__file__).resolve().parents[2] / "sites"
STEP = timedelta(minutes=15)
# A charger speaking OCPP's connector statuses, with codes of its own.
OCPP = {1: "Available", 2: "Preparing", 3: "Charging", 4: "SuspendedEV", 5: "Finishing", 6: "Faulted"}


def _with_plug_states(site: m.Site, states: dict[int, str]) -> m.Site:
    devices = []
    for device in site.devices:
        points = [p.model_copy(update={"states": states}) if p.id == "plug-state" else p for p in device.points]
        devices.append(device.model_copy(update={"points": points}))
    return site.model_copy(update={"devices": devices})


def _snapshot(now: datetime, values: dict[str, float]) -> Snapshot:
    readings = {a: Reading(a, now, v, Quality.GOOD) for a, v in values.items()}
    return Snapshot(now, MappingProxyType(readings), MappingProxyType({}))


def test_plug_states_mean_what_their_labels_say_whatever_the_codes() -> None:
    site = _with_plug_states(load_site(SITES / "zac-union"), OCPP)
    pool = adapter_for(next(a for a in site.assets if a.type == "ev_charger_pool"), site)
    first, second, third = pool.asset.chargers[:3]
    now = datetime(2026, 1, 12, 8, tzinfo=UTC)
    snapshot = _snapshot(now, {first.points["plug_state"]: 3, second.points["plug_state"]: 4,
                               third.points["plug_state"]: 1})
    assert [pool.plug(snapshot, c) for c in (first, second, third)] == [Plug.WANTING, Plug.FULL, Plug.EMPTY]
    # A car plugging in (Available → Preparing) calls for a plan; one finishing does not, nor a fault.
    address = first.points["plug_state"]
    assert pool.replan_on(address, 1, 2) and not pool.replan_on(address, 3, 5) and not pool.replan_on(address, 1, 6)
    # The simulator's codes mean nothing here: 2 is "Preparing", a car, not "charging" by number.
    assert pool.replan_on(address, 1, 2) and not pool.replan_on(address, 2, 3)
    # Without a plan, the cars there share the pool's limit; the empty charger gets nothing.
    ctx = DispatchContext(site, snapshot, now, lambda _t: False, "test", "test")
    amps = {r.address.partition("/")[0]: r.value for r in pool.safe_default(ctx)}
    assert amps[third.points["current_limit"].partition("/")[0]] == 0.0
    assert amps[first.points["current_limit"].partition("/")[0]] > 0.0


def test_gridctl_check_wants_plug_state_labels_it_understands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "zac-union"
    shutil.copytree(SITES / "zac-union", folder)
    charger_map = folder / "maps" / "ev-charger.yaml"
    text = charger_map.read_text()
    charger_map.write_text(text.replace("states: {0: available, 1: plugged, 2: charging, 3: finished, 4: fault}",
                                        "states: {0: available, 1: voiture, 2: charging, 3: finished, 4: fault}"))
    assert main(["check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "plug_state: charger-01/plug-state: state labels 'voiture' say nothing gridctl knows" in out


def _session_rows(site: m.Site, start: datetime, days: int) -> list:
    """Quarter-hour history of the pool's first four chargers: on working days cars arrive between 08:00 and
    09:00 and stay 7-9 h taking 10-16 kWh; on Saturdays they arrive at 14:00 and stay 2 h for 5 kWh."""
    pool = next(a for a in site.assets if a.type == "ev_charger_pool")
    chargers = pool.chargers[:4]
    sessions = []
    for day in range(days):
        date = start + timedelta(days=day)
        for i, charger in enumerate(chargers):
            if date.weekday() < 5:
                arrival = date.replace(hour=7) + timedelta(minutes=15 * (i + day % 3))
                sessions.append((charger, arrival, arrival + timedelta(hours=7 + (i + day) % 3), 10.0 + 2 * ((i + day) % 4)))
            elif date.weekday() == 5:
                arrival = date.replace(hour=13)
                sessions.append((charger, arrival, arrival + timedelta(hours=2), 5.0))
    rows = []
    moment = start
    while moment < start + timedelta(days=days):
        values: dict[str, float] = {}
        for charger in pool.chargers:
            here = [s for s in sessions if s[0] is charger and s[1] <= moment < s[2]]
            values[charger.points["plug_state"]] = 2.0 if here else 0.0
            values[charger.points["power"]] = 0.0
            if here:
                _, arrival, _, energy = here[0]
                done = min((moment - arrival) / timedelta(hours=2), 1.0)
                values[charger.points["session_energy"]] = energy * done
                values[charger.points["power"]] = energy / 2.0 if done < 1.0 else 0.0
        rows.append((moment + STEP / 2, values.get))
        moment += STEP
    return rows


async def test_needs_without_a_declaration_are_learnt_from_the_pools_own_sessions() -> None:
    site = load_site(SITES / "zac-union")
    pool = next(a for a in site.assets if a.type == "ev_charger_pool")
    charger = pool.chargers[0]
    start = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
    forecaster = SignalForecaster()
    forecaster.warm_up(site, _session_rows(site, start, 21))
    history: SessionHistory = forecaster.models(site)[pool.id].history
    # 15 working days × 4 chargers and 3 Saturdays × 4 (the last session still under way is not learnt).
    assert len(history) == 72
    monday = start + timedelta(days=21, hours=7, minutes=30)
    undeclared = ev_session(charger, monday, monday + timedelta(minutes=30), 2.0, 0.0, 0.0, history)
    # A working-day morning car: it stays 7-9 h, so most stay past 7 h (the prior said 1.5 h) and take up to 16 kWh.
    assert undeclared.departure == monday + timedelta(hours=7)
    assert 14.0 <= undeclared.energy_needed_kwh + 2.0 <= 16.0
    saturday = start + timedelta(days=26, hours=13)
    weekend = ev_session(charger, saturday, saturday + timedelta(minutes=15), 0.0, None, None, history)
    assert weekend.departure == saturday + timedelta(hours=2) and weekend.energy_needed_kwh == pytest.approx(5.0)
    # Still there after 8 h: of the cars that stayed that long, the shortest stays are planned for.
    late = ev_session(charger, monday, monday + timedelta(hours=8, minutes=10), 14.0, None, None, history)
    assert late.departure == monday + timedelta(hours=9)
    # A declaration wins over what was learnt; without any history, the prior.
    declared = ev_session(charger, monday, monday + timedelta(minutes=30), 2.0, 3 * 3600.0, 8.0, history)
    assert declared.departure == monday + timedelta(hours=2, minutes=30) and declared.energy_needed_kwh == 6.0
    fresh = ev_session(charger, monday, monday + timedelta(minutes=30), 2.0, None, None, SessionHistory(site.tz))
    assert fresh.departure == monday + PRIOR_STAY and fresh.energy_needed_kwh == PRIOR_ENERGY_KWH - 2.0

    # The forecast for a car plugged now uses the same learning.
    plugged = {c.points["plug_state"]: 0.0 for c in pool.chargers}
    plugged[charger.points["plug_state"]] = 2.0
    forecaster.observe(site, _snapshot(monday, {**plugged, charger.points["session_energy"]: 0.0}))
    now = monday + timedelta(minutes=30)
    snapshot = _snapshot(now, {**plugged, charger.points["session_energy"]: 2.0})
    forecasts = await forecaster.forecast(site, snapshot, now, 96, STEP)
    (session,) = forecasts.ev_sessions
    assert session.departure == monday + timedelta(hours=7)
