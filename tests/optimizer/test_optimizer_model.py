"""Behaviour of the optimiser beyond the golden cases: limits, strategies, physics, format and CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridctl.commands.optimize import main as optimize_main
from optimizer import (
    PV,
    Battery,
    DeferrableLoad,
    EVCharger,
    EVPool,
    EVSession,
    Problem,
    Schedule,
    Settings,
    Site,
    ThermalZone,
    solve,
)
from optimizer.thermal import discretise

T0 = datetime(2026, 1, 15, tzinfo=UTC)
CASES = Path(__file__).parent / "cases"


def _hours(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def test_unreachable_import_limit_is_a_reported_hard_violation() -> None:
    p = Problem(start=T0, n_steps=3, step_minutes=60, site=Site(import_limit_kw=6, load_kw=10,
                                                                  import_price_eur_per_kwh=0.2))
    s = solve(p)
    assert s.status == "optimal"
    hard = s.hard_violations
    assert [(v.kind, round(v.amount, 6)) for v in hard] == [("import_limit", 4.0)] * 3
    assert s.objective["hard_limit_relief"].value == pytest.approx(12.0)


def test_per_step_durations() -> None:
    # Steps of 1 h, 1 h, 2 h. Charge 5 kWh at 0.10, serve the 0.30 hour: 0.5 + 5 kWh x 0.20 = 1.50 EUR.
    p = Problem(start=T0, step_durations_min=[60, 60, 120],
                site=Site(load_kw=[0, 5, 2.5], import_price_eur_per_kwh=[0.1, 0.3, 0.2]),
                assets=[Battery(id="b", capacity_kwh=5, max_charge_kw=5, max_discharge_kw=5, charge_efficiency=1,
                                discharge_efficiency=1, initial_energy_kwh=0)])
    s = solve(p)
    assert s.objective_eur == pytest.approx(1.5, abs=1e-6)
    assert list(s.setpoints.index) == [T0, _hours(1), _hours(2)]
    assert s.setpoints["b.power_kw"].tolist() == pytest.approx([5, -5, 0], abs=1e-6)


def test_battery_never_charges_and_discharges_at_once_when_energy_is_paid_for() -> None:
    p = Problem(start=T0, n_steps=6, step_minutes=60, site=Site(import_price_eur_per_kwh=-0.1),
                assets=[Battery(id="b", capacity_kwh=10, max_charge_kw=5, max_discharge_kw=5, charge_efficiency=0.9,
                                discharge_efficiency=0.9, initial_energy_kwh=5, cycling_cost_eur_per_kwh=0.01)])
    s = solve(p)
    both = (s.setpoints["b.charge_kw"] > 1e-6) & (s.setpoints["b.discharge_kw"] > 1e-6)
    assert not both.any()
    assert s.hard_violations == []


def test_two_node_zone_matches_a_fine_simulation() -> None:
    zone = ThermalZone(id="z", model="2R2C", c_air_kwh_per_k=0.5, c_mass_kwh_per_k=5.0, r_air_mass_k_per_kw=2.0,
                       r_mass_out_k_per_kw=8.0, r_air_out_k_per_kw=20.0, initial_temperature_c=21.0,
                       initial_mass_temperature_c=19.0, outdoor_temperature_c=2.0, heat_pump_max_power_kw=1.0,
                       cop=3.0, comfort_occupied_c=(-50.0, 50.0))
    p = Problem(start=T0, n_steps=8, step_minutes=60, site=Site(import_price_eur_per_kwh=0.2), assets=[zone])
    s = solve(p)
    assert s.setpoints["z.power_kw"].abs().max() < 1e-9
    # Explicit Euler with 1 s steps.
    air, mass, dt = 21.0, 19.0, 1.0 / 3600
    temps = []
    for _ in range(8):
        for _ in range(3600):
            d_air = ((mass - air) / 2.0 + (2.0 - air) / 20.0) / 0.5
            d_mass = ((air - mass) / 2.0 + (2.0 - mass) / 8.0) / 5.0
            air, mass = air + d_air * dt, mass + d_mass * dt
        temps.append(air)
    assert s.setpoints["z.temperature_c"].tolist() == pytest.approx(temps, abs=2e-3)
    ad, _ = discretise(zone, 1.0)
    assert np.all(np.abs(np.linalg.eigvals(ad)) < 1.0)


def _fleet(seed: int, n_ev: int = 8, n_def: int = 3) -> Problem:
    """A car park pool, appliances, a battery and PV over 12 h in 15-min steps."""
    rng = np.random.default_rng(seed)
    price = (0.15 + 0.1 * np.sin(np.arange(48) / 48 * 2 * np.pi) + rng.uniform(-0.02, 0.02, 48)).round(4).tolist()
    assets: list = []
    for i in range(n_ev):
        arrive = float(rng.uniform(0, 4))
        assets.append(EVCharger(id=f"ev{i}", max_power_kw=7.4, min_power_kw=1.38, sessions=[
            EVSession(arrival=_hours(arrive), departure=_hours(arrive + rng.uniform(4, 8)),
                      energy_needed_kwh=float(rng.uniform(5, 20)))]))
    assets.append(EVPool(id="pool", max_power_kw=3.5 * n_ev, charger_ids=[f"ev{i}" for i in range(n_ev)]))
    for k in range(n_def):
        start = int(rng.integers(0, 20))
        assets.append(DeferrableLoad(id=f"d{k}", earliest_start=_hours(start / 4), finish_by=_hours(start / 4 + 5),
                                     power_profile_kw=[float(rng.uniform(1, 3))] * int(rng.integers(2, 6))))
    assets.append(Battery(id="bat", capacity_kwh=10, max_charge_kw=5, max_discharge_kw=5, initial_energy_kwh=5,
                          terminal_energy_kwh=5, cycling_cost_eur_per_kwh=0.02))
    assets.append(PV(id="pv", forecast_kw=[max(0.0, 8 * np.sin((t - 8) / 24 * np.pi)) for t in range(48)]))
    return Problem(start=T0, n_steps=48, step_minutes=15, assets=assets,
                   site=Site(import_limit_kw=60, export_limit_kw=10, load_kw=2.0, import_price_eur_per_kwh=price,
                             export_price_eur_per_kwh=0.05))


def _balance_error(p: Problem, s: Schedule) -> float:
    sp = s.setpoints
    flex = np.zeros(len(sp))
    for a in p.assets:
        if isinstance(a, EVCharger):
            flex += sp[f"{a.id}.average_kw"].to_numpy()
        elif isinstance(a, PV):
            flex -= sp[f"{a.id}.power_kw"].to_numpy()
        elif not isinstance(a, EVPool):
            flex += sp[f"{a.id}.power_kw"].to_numpy()
    expected = np.array(p.series(p.site.load_kw)) + flex
    return float(np.abs(sp["site.net_kw"].to_numpy() - expected).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_lp_rounding_reaches_the_mip_optimum(seed: int) -> None:
    p = _fleet(seed)
    exact = solve(p, Settings(strategy="mip", mip_gap=0.0))
    rounded = solve(p, Settings(strategy="rounding", mip_gap=1e-4))
    assert exact.status == rounded.status == "optimal"
    assert rounded.objective_eur == pytest.approx(exact.objective_eur, rel=2e-4, abs=1e-4)
    assert rounded.objective_eur >= exact.objective_eur - 1e-6
    assert rounded.hard_violations == []
    assert _balance_error(p, rounded) < 1e-6


def test_decomposed_district_stays_whole_and_close_to_the_joint_optimum() -> None:
    p = _fleet(3, n_ev=20, n_def=10)
    joint = solve(p, Settings(mip_gap=1e-3))
    split = solve(p, Settings(mip_gap=1e-3, decompose="always", group_size=12))
    assert split.status == "optimal"
    assert "decomposed" in split.solver
    assert set(joint.setpoints.columns) == set(split.setpoints.columns)
    assert split.hard_violations == []
    assert _balance_error(p, split) < 1e-6
    # Sharing the site limits pro rata can only cost a little against the joint optimum.
    assert joint.objective_eur - 1e-6 <= split.objective_eur <= joint.objective_eur + 0.02 * abs(joint.objective_eur)
    terms = sum(t.eur for t in split.objective.values())
    assert terms == pytest.approx(split.objective_eur)
    # Sub-districts solved in worker processes give the same schedule.
    parallel = solve(p, Settings(mip_gap=1e-3, decompose="always", group_size=12, workers=2))
    assert parallel.objective_eur == pytest.approx(split.objective_eur, rel=1e-6)


def test_cbc_gives_the_same_optimum() -> None:
    data = json.loads((CASES / "002-ev-cheapest-slots.json").read_text())
    s = solve(Problem.model_validate(data["problem"]), Settings(solver="cbc", mip_gap=0.0))
    assert s.solver == "cbc"
    assert s.objective_eur == pytest.approx(data["expected"]["objective_eur"], abs=1e-4)


def test_format_example_is_valid_and_solves() -> None:
    text = (Path(__file__).parents[2] / "optimizer" / "FORMAT.md").read_text()
    example = re.search(r"```json\n(.*?)```", text, re.S)
    assert example is not None
    p = Problem.from_json(example.group(1))
    assert p.start == datetime(2026, 1, 14, 23, tzinfo=UTC)
    s = solve(p)
    assert s.status == "optimal"
    assert s.violations == []


def test_cli_prints_breakdown_and_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schedule.csv"
    code = optimize_main([str(CASES / "003-ev-impossible.json"), "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "ev_unmet" in text and "29.000 kWh" in text
    header = out.read_text().splitlines()[0].split(",")
    assert header[0] == "time" and "ev1.power_kw" in header and "site.import_kw" in header


def test_cli_json_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert optimize_main([str(CASES / "001-battery-arbitrage.json"), "--json", "--gap", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "optimal"
    assert report["objective"]["energy_cost"]["eur"] == pytest.approx(1.57, abs=1e-4)
    bad = tmp_path / "bad.json"
    bad.write_text('{"start": "2026-01-15T00:00:00", "n_steps": 2, "site": {}}')
    assert optimize_main([str(bad)]) == 2
    assert "timezone" in capsys.readouterr().err


def test_deep_discharged_battery_recovers_and_reports_the_time_below() -> None:
    # 0 kWh against a 2 kWh floor, 1 kW charger: 1 kWh short after the first hour, back in band after two.
    p = Problem(start=T0, n_steps=3, step_minutes=60, site=Site(import_price_eur_per_kwh=0.2),
                assets=[Battery(id="b", capacity_kwh=10, max_charge_kw=1, max_discharge_kw=1, charge_efficiency=1,
                                discharge_efficiency=1, min_energy_kwh=2, initial_energy_kwh=0)])
    s = solve(p)
    assert s.status == "optimal"
    assert [(v.kind, v.amount, v.end) for v in s.violations] == [("energy_out_of_band", pytest.approx(1.0), _hours(1))]
    assert s.setpoints["b.energy_kwh"].tolist() == pytest.approx([1, 2, 2])
