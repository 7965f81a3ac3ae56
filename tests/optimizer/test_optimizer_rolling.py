"""Rolling re-solve: the next problem starts where the schedule leaves every asset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from optimizer import (
    Battery,
    DeferrableLoad,
    EVCharger,
    EVSession,
    Problem,
    Site,
    ThermalZone,
    roll_forward,
    solve,
)

T0 = datetime(2026, 1, 15, tzinfo=UTC)


def _problem() -> Problem:
    h = [T0 + timedelta(hours=i) for i in range(9)]
    return Problem(
        start=T0, n_steps=8, step_minutes=60,
        site=Site(load_kw=[1, 1, 1, 1, 3, 3, 3, 3],
                  import_price_eur_per_kwh=[0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.15, 0.15]),
        assets=[
            Battery(id="bat", capacity_kwh=6, max_charge_kw=3, max_discharge_kw=3, charge_efficiency=1,
                    discharge_efficiency=1, initial_energy_kwh=0),
            EVCharger(id="ev", max_power_kw=7, min_power_kw=1.4, sessions=[
                EVSession(arrival=h[1], departure=h[7], energy_needed_kwh=12)]),
            DeferrableLoad(id="wash", earliest_start=h[0], finish_by=h[8], power_profile_kw=[2, 2, 1]),
            ThermalZone(id="flat", model="2R2C", c_air_kwh_per_k=0.5, c_mass_kwh_per_k=5, r_air_mass_k_per_kw=2,
                        r_mass_out_k_per_kw=8, initial_temperature_c=20, outdoor_temperature_c=[5.0] * 8,
                        heat_pump_max_power_kw=2, cop=3),
        ],
    )


def test_roll_forward_carries_every_state() -> None:
    p = _problem()
    s = solve(p)
    # The appliance starts at 00:00 (the 0.10 hours), so it is mid-run at 02:00.
    assert s.setpoints["wash.started"].tolist()[0] == pytest.approx(1.0)
    nxt = roll_forward(p, s, 2)
    assert nxt.start == T0 + timedelta(hours=2)
    assert nxt.steps == p.steps
    by_id = {a.id: a for a in nxt.assets}
    bat, ev, wash, flat = by_id["bat"], by_id["ev"], by_id["wash"], by_id["flat"]
    assert isinstance(bat, Battery) and isinstance(ev, EVCharger)
    assert isinstance(wash, DeferrableLoad) and isinstance(flat, ThermalZone)
    assert bat.initial_energy_kwh == pytest.approx(s.setpoints["bat.energy_kwh"].iloc[1])
    delivered = float(s.setpoints["ev.power_kw"].iloc[:2].sum())
    assert ev.sessions[0].energy_needed_kwh == pytest.approx(12 - delivered)
    assert ev.sessions[0].arrival == nxt.start
    assert wash.power_profile_kw == [1]
    assert (wash.earliest_start, wash.finish_by) == (nxt.start, nxt.start + timedelta(hours=1))
    assert flat.initial_temperature_c == pytest.approx(s.setpoints["flat.temperature_c"].iloc[1])
    assert flat.initial_mass_temperature_c == pytest.approx(s.setpoints["flat.mass_temperature_c"].iloc[1])
    assert nxt.site.import_price_eur_per_kwh == [0.2, 0.2, 0.3, 0.3, 0.15, 0.15, 0.15, 0.15]


def test_rolled_problem_continues_the_plan() -> None:
    p = _problem()
    s = solve(p)
    nxt = solve(roll_forward(p, s, 2))
    assert nxt.status == "optimal"
    assert nxt.setpoints["wash.power_kw"].iloc[0] == pytest.approx(1.0)
    # Nothing unexpected happened, so the rest of the plan is still optimal: same EV energy, no violation.
    assert nxt.violations == [] or all(v.kind in ("too_cold", "too_warm") for v in nxt.violations)
    assert nxt.setpoints["ev.power_kw"].iloc[:5].sum() == pytest.approx(s.setpoints["ev.power_kw"].iloc[2:7].sum())
