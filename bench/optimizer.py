"""Optimiser benchmark: gridctl against EMHASS on identical home problems, then district scale.

Run: .venv/bin/python bench/optimizer.py [--quick] [--skip-emhass]
EMHASS is installed into its own venv (bench/.venv-emhass) on first run. The last line printed is one
JSON object with every figure, the EMHASS baseline measured in the same run included.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This script is named like the package it measures: keep bench/ off the path so `optimizer` is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import pulp  # noqa: E402

from optimizer import PV, Battery, DeferrableLoad, HotWaterTank, Problem, Settings, Site, solve  # noqa: E402
from optimizer.model import build  # noqa: E402


def _load_district() -> object:
    spec = importlib.util.spec_from_file_location("bench_district", HERE / "district.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.district


district = _load_district()

EMHASS_VENV = HERE / ".venv-emhass"
EMHASS_VERSION = "0.18.7"
START = datetime(2026, 6, 15, tzinfo=UTC)


def home(n_loads: int, seed: int, n: int = 48, step: int = 30, gap: float = 1e-3, limit_s: float = 30.0) -> dict:
    """A home with PV, a battery and `n_loads` appliances, in a neutral format both optimisers read."""
    rng = random.Random(seed * 1000 + n_loads)
    hours = [(i * step / 60 + 2) % 24 for i in range(n)]  # Europe/Paris is UTC+2 in June
    sun = [max(0.0, math.sin(math.pi * (h - 7) / 14)) for h in hours]
    pv = [round(6.0 * 0.8 * s * rng.uniform(0.4, 1.0), 4) for s in sun]
    load = [round(0.3 + 0.5 * rng.random() + (1.0 if 18 <= h < 22 else 0.0), 4) for h in hours]
    imp = [round((0.1635 if (h >= 22 or h < 6) else 0.2081) + rng.uniform(-0.03, 0.03), 4) for h in hours]
    exp = [round(max(0.0, 0.06 + rng.uniform(-0.04, 0.04)), 4) for _ in hours]
    loads = []
    for _ in range(n_loads):
        steps = rng.randint(2, 6)
        start = rng.randint(0, n - steps - 4)
        end = rng.randint(start + steps + 2, n)
        loads.append({"nominal_kw": round(rng.uniform(0.5, 3.0), 3), "steps": steps, "start_step": start,
                      "end_step": end})
    return {
        "start": START.isoformat(), "n_steps": n, "step_minutes": step, "pv_kw": pv, "load_kw": load,
        "import_price": imp, "export_price": exp,
        "import_limit_kw": round(10.0 + sum(ld["nominal_kw"] for ld in loads), 3), "export_limit_kw": 9.0,
        "mip_gap": gap, "time_limit_s": limit_s,
        "battery": {"capacity_kwh": 10.0, "max_charge_kw": 5.0, "max_discharge_kw": 5.0,
                    "charge_efficiency": 0.95, "discharge_efficiency": 0.95, "min_energy_kwh": 1.0,
                    "max_energy_kwh": 9.0, "initial_energy_kwh": 5.0, "terminal_energy_kwh": 5.0},
        "loads": loads,
    }


def to_problem(h: dict) -> Problem:
    t = [START + timedelta(minutes=h["step_minutes"] * i) for i in range(h["n_steps"] + 1)]
    b = h["battery"]
    assets: list = [
        PV(id="pv", forecast_kw=h["pv_kw"], curtailable=False),
        Battery(id="bat", capacity_kwh=b["capacity_kwh"], max_charge_kw=b["max_charge_kw"],
                max_discharge_kw=b["max_discharge_kw"], charge_efficiency=b["charge_efficiency"],
                discharge_efficiency=b["discharge_efficiency"], min_energy_kwh=b["min_energy_kwh"],
                max_energy_kwh=b["max_energy_kwh"], initial_energy_kwh=b["initial_energy_kwh"],
                terminal_energy_kwh=b["terminal_energy_kwh"]),
    ]
    for k, ld in enumerate(h["loads"]):
        assets.append(DeferrableLoad(id=f"def{k}", earliest_start=t[ld["start_step"]], finish_by=t[ld["end_step"]],
                                     power_profile_kw=[ld["nominal_kw"]] * ld["steps"]))
    return Problem(
        start=START, n_steps=h["n_steps"], step_minutes=h["step_minutes"],
        site=Site(import_limit_kw=h["import_limit_kw"], export_limit_kw=h["export_limit_kw"], load_kw=h["load_kw"],
                  import_price_eur_per_kwh=h["import_price"], export_price_eur_per_kwh=h["export_price"]),
        assets=assets,
    )


def evaluate(h: dict, grid_kw: list[float], battery_kw: list[float], deferrable_kw: list[list[float]]) -> dict:
    """Cost of a schedule and whether it is feasible, computed the same way for both optimisers.

    battery_kw is positive when discharging (EMHASS's convention)."""
    dt = h["step_minutes"] / 60.0
    n = h["n_steps"]
    cost = sum((max(g, 0.0) * h["import_price"][t] - max(-g, 0.0) * h["export_price"][t]) * dt
               for t, g in enumerate(grid_kw))
    problems: list[str] = []
    for t in range(n):
        demand = h["load_kw"][t] + sum(d[t] for d in deferrable_kw) - h["pv_kw"][t] - battery_kw[t]
        if abs(demand - grid_kw[t]) > 1e-3:
            problems.append(f"balance t={t}")
        if grid_kw[t] > h["import_limit_kw"] + 1e-3 or -grid_kw[t] > h["export_limit_kw"] + 1e-3:
            problems.append(f"grid limit t={t}")
    b = h["battery"]
    e = b["initial_energy_kwh"]
    for t, p in enumerate(battery_kw):
        e -= (p / b["discharge_efficiency"] if p > 0 else p * b["charge_efficiency"]) * dt
        if not b["min_energy_kwh"] - 1e-3 <= e <= b["max_energy_kwh"] + 1e-3:
            problems.append(f"battery energy t={t}")
    terminal_short = max(0.0, b["terminal_energy_kwh"] - e)
    for k, ld in enumerate(h["loads"]):
        on = [t for t, v in enumerate(deferrable_kw[k]) if v > 1e-6]
        ok = (len(on) == ld["steps"] and on == list(range(on[0], on[0] + ld["steps"]))
              and on[0] >= ld["start_step"] and on[-1] < ld["end_step"]
              and all(abs(deferrable_kw[k][t] - ld["nominal_kw"]) < 1e-3 for t in on)) if on else False
        if not ok:
            problems.append(f"load {k}")
    return {"cost_eur": cost, "terminal_shortfall_kwh": terminal_short, "feasible": not problems,
            "problems": problems[:5]}


def ensure_emhass() -> Path:
    py = EMHASS_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(["python3", "-m", "venv", str(EMHASS_VENV)], check=True)
    probe = subprocess.run([str(py), "-c", "import emhass"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"emhass=={EMHASS_VERSION}"], check=True)
    return py


def run_emhass(py: Path, homes: list[dict]) -> list[dict]:
    out = subprocess.run([str(py), str(HERE / "emhass_runner.py")], input=json.dumps(homes),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(quick: bool, skip_emhass: bool) -> dict:
    sizes = [2, 10] if quick else [2, 10, 50]
    seeds = [0, 1] if quick else [0, 1, 2]
    keys = [(n, s) for n in sizes for s in seeds]
    homes = [home(n, s) for n, s in keys]
    emhass = [None] * len(homes) if skip_emhass else run_emhass(ensure_emhass(), homes)
    rows = []
    for (n_loads, seed), h, em in zip(keys, homes, emhass, strict=True):
        settings = Settings(mip_gap=h["mip_gap"], time_limit_s=h["time_limit_s"])
        t0 = time.perf_counter()
        sched = solve(to_problem(h), settings)
        total = time.perf_counter() - t0
        sp = sched.setpoints
        ours = evaluate(h, (sp["site.import_kw"] - sp["site.export_kw"]).tolist(), (-sp["bat.power_kw"]).tolist(),
                        [sp[f"def{k}.power_kw"].tolist() for k in range(len(h["loads"]))])
        row = {"n_loads": n_loads, "seed": seed, "gridctl_cost_eur": round(ours["cost_eur"], 5),
               "gridctl_feasible": ours["feasible"], "gridctl_s": round(total, 3), "gridctl_status": sched.status,
               "gridctl_gap": sched.mip_gap}
        if em is not None:
            theirs = evaluate(h, em["grid_kw"], em["battery_discharge_kw"], em["deferrable_kw"])
            ref = theirs["cost_eur"]
            row.update({
                "emhass_cost_eur": round(ref, 5), "emhass_feasible": theirs["feasible"],
                "emhass_problems": theirs["problems"],
                "emhass_terminal_shortfall_kwh": theirs["terminal_shortfall_kwh"],
                "emhass_s": round(em["solve_s"], 3), "emhass_status": em["status"],
                "no_worse": ours["cost_eur"] <= ref + 0.005 * abs(ref) + 1e-6,
                "time_ratio": round(total / em["solve_s"], 3) if em["solve_s"] > 0 else None,
            })
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary: dict = {"cases": rows}
    if not skip_emhass:
        ratios = [r["time_ratio"] for r in rows if r.get("time_ratio")]
        summary["all_no_worse"] = all(r["no_worse"] for r in rows)
        summary["median_time_ratio"] = sorted(ratios)[len(ratios) // 2] if ratios else None
    return summary


def lp_bound(problem: Problem) -> float:
    """The LP relaxation of the whole district in one model: a lower bound on its optimum."""
    model = build(problem, Settings())
    model.prob.solve(pulp.HiGHS(mip=False, msg=False))
    return float(model.prob.solverModel.getInfo().objective_function_value)


def scale(quick: bool, time_limit_s: float) -> list[dict]:
    """The district at 10, 100 and 1000 assets, then with hot-water tanks in place of half its heat-pump flats."""
    rows = []
    goals = {10: 10.0, 100: 10.0, 1000: 60.0}
    sizes = [10, 100] if quick else [10, 100, 1000]
    for n, tanks in [(n, False) for n in sizes] + [(n, True) for n in sizes[1:]]:
        problem = district(n, 96, seed=0, tanks=tanks)
        t0 = time.perf_counter()
        sched = solve(problem, Settings(mip_gap=0.01, time_limit_s=time_limit_s))
        wall = time.perf_counter() - t0
        bound = lp_bound(problem)
        n_tanks = sum(isinstance(a, HotWaterTank) for a in problem.assets)
        row = {"assets": n, "hot_water_tanks": n_tanks, "steps": 96, "build_s": round(sched.build_s, 3),
               "solve_s": round(sched.solve_s, 3),
               "total_s": round(wall, 3), "goal_s": goals[n], "goal_met": wall < goals[n], "status": sched.status,
               "gap": sched.mip_gap, "objective_eur": round(sched.objective_eur, 3),
               "lp_bound_eur": round(bound, 3),
               "gap_vs_lp_bound": round((sched.objective_eur - bound) / abs(sched.objective_eur), 6),
               "solver": sched.solver,
               "variables": sched.n_variables, "binaries": sched.n_binaries,
               "soft_violations": len(sched.violations) - len(sched.hard_violations),
               "hard_violations": len(sched.hard_violations), "notes": sched.notes}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer sizes and seeds")
    ap.add_argument("--skip-emhass", action="store_true", help="gridctl only")
    ap.add_argument("--time-limit", type=float, default=50.0, help="solver time limit for the scale runs")
    args = ap.parse_args()
    result = {
        "benchmark": "optimizer",
        "cpus": os.cpu_count(),
        "emhass_vs_gridctl": compare(args.quick, args.skip_emhass),
        "scale": scale(args.quick, args.time_limit),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
