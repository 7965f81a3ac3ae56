"""Domestic hot-water tanks: properties on random tanks, the LP-rounding start, rolling and validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pulp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from optimizer import HotWaterTank, Problem, Settings, Site, roll_forward, solve
from optimizer.model import build
from optimizer.rounding import round_switches
from optimizer.solve import _objective

T0 = datetime(2026, 1, 15, 20, tzinfo=UTC)
WATER_KWH_PER_L_K = 4.1868 / 3600.0


def _integrated_temperatures(tank: HotWaterTank, p: Problem, power: np.ndarray, substeps: int = 100) -> list[float]:
    """The tank's temperature at the end of each step by Runge-Kutta integration of its heat balance
    C dT/dt = cop·P − UA·(T − T_amb) − (draw rate)·c·(T − T_cold), independent of the model's discretisation."""
    cap = tank.volume_l * WATER_KWH_PER_L_K
    cop, amb, draw = p.series(tank.cop), p.series(tank.ambient_temperature_c), p.series(tank.draw_l)
    temp, out = tank.initial_temperature_c, []
    for t, hours in enumerate(p.durations_h()):
        flow_l_per_h = draw[t] / hours

        def slope(x: float, t: int = t, flow: float = flow_l_per_h) -> float:
            return (cop[t] * power[t] - tank.standing_loss_kw_per_k * (x - amb[t])
                    - flow * WATER_KWH_PER_L_K * (x - tank.cold_water_temperature_c)) / cap

        h = hours / substeps
        for _ in range(substeps):
            k1 = slope(temp)
            k2 = slope(temp + h * k1 / 2)
            k3 = slope(temp + h * k2 / 2)
            k4 = slope(temp + h * k3)
            temp += h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        out.append(temp)
    return out


@st.composite
def tank_problems(draw: st.DrawFn) -> Problem:
    n = draw(st.integers(4, 12))
    minutes = draw(st.sampled_from([15, 30, 60]))
    floats = st.floats
    volume = draw(floats(50.0, 300.0))
    on_off = draw(st.booleans())
    heat_pump = draw(st.booleans())
    cop = [draw(floats(2.0, 4.0)) for _ in range(n)] if heat_pump else 1.0
    due = draw(st.one_of(st.none(), st.integers(1, n + 3)))
    tank = HotWaterTank(
        id="tank", volume_l=volume, heater_max_power_kw=draw(floats(0.5, 3.0)), cop=cop, on_off=on_off,
        heating_allowed=[draw(st.booleans()) or t % 3 == 0 for t in range(n)],
        standing_loss_kw_per_k=draw(floats(0.0, 0.005)),
        ambient_temperature_c=[draw(floats(5.0, 25.0)) for _ in range(n)],
        cold_water_temperature_c=draw(floats(8.0, 15.0)), initial_temperature_c=draw(floats(20.0, 70.0)),
        min_temperature_c=[draw(st.sampled_from([0.0, 40.0, 50.0])) for _ in range(n)], max_temperature_c=65.0,
        draw_l=[draw(st.sampled_from([0.0, 0.0, 10.0, 60.0, 250.0])) for _ in range(n)],
        legionella_due_by=None if due is None else T0 + timedelta(minutes=minutes * due),
    )
    prices = [draw(floats(0.05, 0.3)) for _ in range(n)]
    site = Site(load_kw=[draw(floats(0.0, 3.0)) for _ in range(n)], import_price_eur_per_kwh=prices,
                import_limit_kw=draw(st.sampled_from([None, 2.0, 20.0])))
    return Problem(start=T0, n_steps=n, step_minutes=minutes, site=site, assets=[tank])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tank_problems())
def test_tank_schedule_is_physical_and_reports_every_shortfall(p: Problem) -> None:
    s = solve(p, Settings(mip_gap=0.0))
    assert s.status == "optimal"
    tank = p.assets[0]
    assert isinstance(tank, HotWaterTank)
    sp = s.setpoints
    power = sp["tank.power_kw"].to_numpy()
    temps = sp["tank.temperature_c"].to_numpy()
    allowed = np.array(p.flags(tank.heating_allowed))
    # The heater: within its power, off where heating is not allowed, fully on or off behind a contactor.
    assert (power >= -1e-7).all() and (power <= tank.heater_max_power_kw + 1e-7).all()
    assert (power[~allowed] <= 1e-7).all()
    if tank.on_off:
        assert np.minimum(power, tank.heater_max_power_kw - power).max() <= 1e-6
    # The temperatures are the physics' (a fine integration, independent of the model's discretisation).
    assert temps == pytest.approx(_integrated_temperatures(tank, p, power), abs=1e-4)
    assert sp["tank.heat_kw"].to_numpy() == pytest.approx(power * np.array(p.series(tank.cop)), abs=1e-6)
    # The maximum holds, unless the tank is above it without any heating.
    no_heat = _integrated_temperatures(tank, p, np.zeros(p.steps))
    assert (temps <= np.maximum(tank.max_temperature_c, no_heat) + 1e-3).all()
    assert s.hard_violations == [] or {v.kind for v in s.hard_violations} == {"import_limit"}
    # Every kelvin-hour below the minimum is reported, and nothing else.
    dt = np.array(p.durations_h())
    low = np.array(p.series(tank.min_temperature_c))
    wanted = np.where(low > tank.cold_water_temperature_c, np.maximum(low - temps, 0.0), 0.0)
    cold = [v for v in s.violations if v.kind == "too_cold"]
    assert sum(v.amount for v in cold) == pytest.approx(float((wanted * dt).sum()), abs=1e-4)
    assert s.objective.get("hot_water_shortfall", None) is None or s.objective["hot_water_shortfall"].value == (
        pytest.approx(float((wanted * dt).sum()), abs=1e-4))
    # Legionella: reached by its due time at the end of some step, or the shortfall is reported.
    due = tank.legionella_due_by
    missed = [v for v in s.violations if v.kind == "legionella_not_reached"]
    ends = p.step_starts()[1:]
    if due is None or due > ends[-1]:
        assert missed == []
    else:
        best = max(temps[t] for t, end in enumerate(ends) if end <= max(due, ends[0]))
        short = max(0.0, tank.legionella_temperature_c - best)
        assert sum(v.amount for v in missed) == pytest.approx(short, abs=1e-4)
    # The site balance and the objective's terms.
    assert sp["site.net_kw"].to_numpy() == pytest.approx(np.array(p.series(p.site.load_kw)) + power, abs=1e-6)
    assert s.objective_eur == pytest.approx(sum(t.eur for t in s.objective.values()))


def _homes(n_tanks: int, seed: int) -> Problem:
    """Contactor-switched tanks of a block of flats on HP/HC prices, with evening draws."""
    rng = np.random.default_rng(seed)
    n = 48
    hours = [(20 + t / 2) % 24 for t in range(n)]
    price = [0.1635 if (h >= 22 or h < 6) else 0.2081 for h in hours]
    tanks = []
    for i in range(n_tanks):
        draws = [float(rng.choice([0.0, 0.0, 0.0, 20.0, 40.0])) if 6 <= h < 9 or 19 <= h < 22 else 0.0 for h in hours]
        tanks.append(HotWaterTank(
            id=f"t{i}", volume_l=float(rng.choice([150.0, 200.0, 300.0])), heater_max_power_kw=float(rng.choice([1.2, 2.2, 3.0])),
            standing_loss_kw_per_k=0.0015, ambient_temperature_c=18.0, cold_water_temperature_c=11.0,
            initial_temperature_c=float(rng.uniform(42.0, 58.0)), min_temperature_c=45.0, max_temperature_c=65.0,
            draw_l=draws, legionella_due_by=T0 + timedelta(hours=12) if i % 4 == 0 else None))
    return Problem(start=T0, n_steps=n, step_minutes=30, assets=tanks,
                   site=Site(load_kw=5.0, import_limit_kw=6.0 + 1.5 * n_tanks, import_price_eur_per_kwh=price))


def test_lp_rounding_start_switches_contactors_within_the_site_limit_and_the_lp_comfort() -> None:
    # All contactors closing at once is the 22:00 peak: the site limit leaves room for about half of them.
    p = _homes(12, seed=4)
    model = build(p, Settings())
    model.prob.solve(pulp.HiGHS(mip=False, msg=False))
    relaxed = _objective(model)
    fixed = round_switches(model)
    for v, x in fixed.items():
        v.lowBound = v.upBound = x
    model.prob.solve(pulp.HiGHS(mip=False, msg=False))
    rounded = _objective(model)
    assert {x for v, x in fixed.items()} <= {0.0, 1.0}
    assert rounded["hard_limit_relief"].value == pytest.approx(0.0, abs=1e-6)
    # The contactors keep at least the LP's heat: no more cold water than in the relaxation.
    assert rounded["hot_water_shortfall"].value <= relaxed["hot_water_shortfall"].value + 1e-6
    assert rounded["legionella_shortfall"].value == pytest.approx(0.0, abs=1e-6)
    assert rounded["energy_cost"].value <= 1.1 * relaxed["energy_cost"].value
    # The whole strategy then gives a schedule the post-solve check accepts.
    s = solve(p, Settings(strategy="rounding", mip_gap=1e-2, time_limit_s=5))
    assert s.has_solution and s.hard_violations == []
    assert s.objective_eur <= sum(t.eur for t in rounded.values()) + 1e-6
    for a in p.assets:
        power = s.setpoints[f"{a.id}.power_kw"].to_numpy()
        assert np.minimum(power, a.heater_max_power_kw - power).max() <= 1e-6


def test_rolling_forward_carries_the_temperature_and_clears_a_finished_legionella_cycle() -> None:
    tank = HotWaterTank(id="t", volume_l=100, heater_max_power_kw=3.0, on_off=False, standing_loss_kw_per_k=0.0,
                        cold_water_temperature_c=10.0, initial_temperature_c=50.0, min_temperature_c=40.0,
                        draw_l=[0, 0, 0, 30], legionella_due_by=T0 + timedelta(hours=2))
    p = Problem(start=T0, n_steps=4, step_minutes=60, site=Site(import_price_eur_per_kwh=[0.1, 0.2, 0.3, 0.3]),
                assets=[tank])
    s = solve(p)
    assert s.setpoints["t.temperature_c"].iloc[0] == pytest.approx(60.0, abs=1e-6)
    nxt = roll_forward(p, s, 1)
    moved = nxt.assets[0]
    assert isinstance(moved, HotWaterTank)
    assert moved.initial_temperature_c == pytest.approx(60.0, abs=1e-6)
    assert moved.legionella_due_by is None
    assert moved.draw_l == [0, 0, 30, 30]
    # Not reached in the first step (the second is cheaper): the cycle stays due.
    later = p.model_copy(update={"site": Site(import_price_eur_per_kwh=[0.3, 0.1, 0.3, 0.3])})
    assert roll_forward(later, solve(later), 1).assets[0].legionella_due_by == T0 + timedelta(hours=2)


def test_a_tank_found_above_its_maximum_cools_back_without_making_the_problem_infeasible() -> None:
    # A negative price: the tank would take heat if it could.
    tank = HotWaterTank(id="t", volume_l=200, heater_max_power_kw=2.0, standing_loss_kw_per_k=0.002,
                        ambient_temperature_c=20.0, initial_temperature_c=70.0, max_temperature_c=65.0,
                        min_temperature_c=45.0)
    s = solve(Problem(start=T0, n_steps=4, step_minutes=60, site=Site(import_price_eur_per_kwh=-0.1), assets=[tank]))
    assert s.status == "optimal" and s.hard_violations == []
    assert s.setpoints["t.power_kw"].abs().max() < 1e-9
    assert (np.diff(s.setpoints["t.temperature_c"].to_numpy()) < 0).all()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("cop", [3.0, 0.0], "cop must be positive"),
    ("draw_l", [10.0, -1.0], "draw_l must not be negative"),
    ("legionella_temperature_c", 70.0, "legionella_temperature_c above max_temperature_c"),
    ("max_temperature_c", 10.0, "max_temperature_c must be above cold_water_temperature_c"),
    ("min_temperature_c", [45.0, 70.0], "min_temperature_c above max_temperature_c"),
    ("volume_l", True, "valid number"),
    ("initial_temperature_c", float("nan"), "finite number"),
])
def test_tank_refuses_impossible_data(field: str, value: object, message: str) -> None:
    base = {"id": "t", "volume_l": 200, "heater_max_power_kw": 2.0, "standing_loss_kw_per_k": 0.002,
            "initial_temperature_c": 50.0}
    with pytest.raises(ValidationError, match=message):
        HotWaterTank.model_validate({**base, field: value})
