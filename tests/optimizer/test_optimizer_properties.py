"""Properties every schedule must have, on random small problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer import PV, Battery, EVCharger, EVSession, Problem, Site, solve

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    n = draw(st.integers(4, 12))
    floats = st.floats(-0.05, 0.4, allow_nan=False)
    imp = [draw(floats) for _ in range(n)]
    exp = [min(p, draw(st.floats(0.0, 0.1))) for p in imp]
    load = [draw(st.floats(0.0, 5.0)) for _ in range(n)]
    cap = draw(st.floats(1.0, 20.0))
    battery = Battery(
        id="bat", capacity_kwh=cap, max_charge_kw=draw(st.floats(0.5, 5.0)),
        max_discharge_kw=draw(st.floats(0.5, 5.0)), charge_efficiency=draw(st.floats(0.8, 1.0)),
        discharge_efficiency=draw(st.floats(0.8, 1.0)), initial_energy_kwh=draw(st.floats(0.0, cap)),
        terminal_energy_kwh=draw(st.one_of(st.none(), st.floats(0.0, cap))),
        cycling_cost_eur_per_kwh=draw(st.sampled_from([0.0, 0.02])),
    )
    arrive = draw(st.integers(0, n - 1))
    leave = draw(st.integers(arrive + 1, n))
    ev = EVCharger(id="ev", max_power_kw=7.4, min_power_kw=draw(st.sampled_from([0.0, 1.38])),
                   efficiency=draw(st.floats(0.85, 1.0)),
                   sessions=[EVSession(arrival=T0 + timedelta(hours=arrive), departure=T0 + timedelta(hours=leave),
                                       energy_needed_kwh=draw(st.floats(0.0, 40.0)))])
    pv = PV(id="pv", forecast_kw=[draw(st.floats(0.0, 8.0)) for _ in range(n)], curtailable=draw(st.booleans()))
    site = Site(import_limit_kw=draw(st.sampled_from([None, 8.0, 20.0])),
                export_limit_kw=draw(st.sampled_from([None, 3.0])), load_kw=load,
                import_price_eur_per_kwh=imp, export_price_eur_per_kwh=exp)
    return Problem(start=T0, n_steps=n, step_minutes=60, site=site, assets=[battery, ev, pv])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_schedule_is_consistent(problem: Problem) -> None:
    s = solve(problem)
    assert s.status == "optimal"
    sp = s.setpoints
    bat = problem.assets[0]
    assert isinstance(bat, Battery)
    # Site balance.
    net = np.array(problem.series(problem.site.load_kw)) + sp["bat.power_kw"] + sp["ev.average_kw"] - sp["pv.power_kw"]
    assert np.allclose(sp["site.net_kw"], net, atol=1e-6)
    assert np.allclose(sp["site.net_kw"], sp["site.import_kw"] - sp["site.export_kw"], atol=1e-6)
    # Battery energy follows its flows.
    e = bat.initial_energy_kwh + np.cumsum(
        sp["bat.charge_kw"] * bat.charge_efficiency - sp["bat.discharge_kw"] / bat.discharge_efficiency
    )
    assert np.allclose(sp["bat.energy_kwh"], e, atol=1e-5)
    # Delivered plus missing energy is what the driver asked for.
    ev = problem.assets[1]
    assert isinstance(ev, EVCharger)
    delivered = float((sp["ev.average_kw"] * ev.efficiency).sum())
    unmet = float(sp["ev.session0.unmet_kwh"].iloc[0])
    assert delivered + unmet == pytest.approx(ev.sessions[0].energy_needed_kwh, abs=1e-5)
    # The objective is the sum of its reported terms; violations are positive amounts.
    assert s.objective_eur == pytest.approx(sum(t.eur for t in s.objective.values()))
    assert all(v.amount > 0 for v in s.violations)
    # Only a site limit that no schedule can meet may be broken, and then it is reported.
    for v in s.hard_violations:
        assert v.kind in ("import_limit", "export_limit")
    if problem.site.import_limit_kw is None and problem.site.export_limit_kw is None:
        assert s.hard_violations == []
