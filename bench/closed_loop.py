"""Closed-loop benchmark: baseline, gridctl and oracle on each demonstrator, a winter and a summer week.

Each run is `gridctl simulate` in its own process (so its memory is its own): the control cycle on
simulated time against the simulated site, through the real protocol stacks on loopback. Reports the
BOPTEST-style KPIs of every run, the share of the oracle's cost saving over the baseline that gridctl
captures, and the process's resident memory at the end of every simulated day.

    python bench/closed_loop.py [--days 7] [--jobs 2] [--sites ...] [--seasons winter summer]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEASONS = {"winter": "2026-01-12T00:00+01:00", "summer": "2026-07-06T00:00+02:00"}
SITES = ("zac-saint-sauveur", "zac-union", "zac-haute-deule")
CONTROLLERS = ("baseline", "gridctl", "oracle")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_one(job: dict) -> dict:
    sys.path.insert(0, str(REPO))
    from gridctl import logs
    from gridctl.simulate.loop import SimulationOptions, simulate

    logs.configure("error")
    start = datetime.fromisoformat(job["start"])
    daily_rss: list[float] = []
    next_day = [start + timedelta(days=1)]

    def on_step(moment, _simulation, _controller) -> None:
        if moment >= next_day[0]:
            daily_rss.append(round(_rss_mb(), 1))
            next_day[0] += timedelta(days=1)

    options = SimulationOptions(site=REPO / "sites" / job["site"], controller=job["controller"], days=job["days"],
                                seed=job["seed"], start=start, step=timedelta(minutes=job["step_min"]),
                                physics_step=timedelta(minutes=5), optimise_every=timedelta(hours=1))
    began = time.perf_counter()
    result = asyncio.run(simulate(options, on_step=on_step))
    out = result.as_dict()
    out.update(season=job["season"], daily_rss_mb=daily_rss,
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               run_s=round(time.perf_counter() - began, 1))
    return out


def adjusted_cost(run: dict, mean_price: float) -> float:
    """Energy cost, crediting energy left in batteries (or charging what was taken) at the mean price."""
    kpis = run["kpis"]
    return kpis["cost_eur"] - kpis["battery_stored_delta_kwh"] * mean_price


def _growth(daily: list[float]) -> float | None:
    return round(daily[-1] - daily[0], 1) if len(daily) >= 2 else None


def summarise(runs: list[dict]) -> dict:
    cases = {}
    for run in runs:
        cases.setdefault((run["site"], run["season"]), {})[run["controller"]] = run
    summary = []
    for (site, season), by_controller in sorted(cases.items()):
        if set(by_controller) != set(CONTROLLERS):
            continue
        baseline, gridctl = by_controller["baseline"], by_controller["gridctl"]
        imported = max(baseline["kpis"]["energy_import_kwh"], 1e-9)
        mean_price = baseline["kpis"]["energy_cost_eur"] / imported
        costs = {c: round(adjusted_cost(r, mean_price), 2) for c, r in by_controller.items()}
        oracle_saving = costs["baseline"] - costs["oracle"]
        gridctl_saving = costs["baseline"] - costs["gridctl"]
        captured = gridctl_saving / oracle_saving if oracle_saving > 1e-6 else None
        kb, kg = baseline["kpis"], gridctl["kpis"]
        summary.append({
            "site": site, "season": season, "adjusted_cost_eur": costs,
            "oracle_saving_eur": round(oracle_saving, 2), "gridctl_saving_eur": round(gridctl_saving, 2),
            "captured_share": None if captured is None else round(captured, 3),
            "discomfort_k_h": {c: r["kpis"]["discomfort_total_k_h"] for c, r in by_controller.items()},
            "ev_unmet_kwh": {c: r["kpis"]["ev_unmet_kwh"] for c, r in by_controller.items()},
            "grid_limit_violations": {c: r["kpis"]["grid_limit_violations"] for c, r in by_controller.items()},
            "goals": {
                "captures_80_percent": captured is not None and captured >= 0.8,
                "no_more_discomfort": kg["discomfort_total_k_h"] <= kb["discomfort_total_k_h"] + 0.05,
                "no_more_ev_unmet": kg["ev_unmet_kwh"] <= kb["ev_unmet_kwh"] + 0.05,
                "no_grid_violation": kg["grid_limit_violations"] == 0,
            },
            "gridctl_peak_rss_mb": gridctl["peak_rss_mb"],
            "gridctl_daily_rss_mb": gridctl["daily_rss_mb"],
            "gridctl_rss_growth_first_to_last_day_mb": _growth(gridctl["daily_rss_mb"]),
        })
    return {"cases": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--step-min", type=float, default=15.0)
    parser.add_argument("--sites", nargs="+", default=list(SITES))
    parser.add_argument("--seasons", nargs="+", default=list(SEASONS), choices=list(SEASONS))
    parser.add_argument("--controllers", nargs="+", default=list(CONTROLLERS), choices=list(CONTROLLERS))
    args = parser.parse_args()
    jobs = [{"site": site, "season": season, "start": SEASONS[season], "controller": controller,
             "days": args.days, "seed": args.seed, "step_min": args.step_min}
            for site in args.sites for season in args.seasons for controller in args.controllers]
    began = time.perf_counter()
    runs = []
    with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for run in pool.imap_unordered(run_one, jobs):
            runs.append(run)
            kpis = run["kpis"]
            print(f"{run['site']:<18} {run['season']:<6} {run['controller']:<8} cost {kpis['cost_eur']:>9.2f} €  "
                  f"discomfort {kpis['discomfort_total_k_h']:>7.2f} K·h  EV unmet {kpis['ev_unmet_kwh']:>6.2f} kWh  "
                  f"peak {kpis['peak_import_kw']:>6.1f} kW  violations {kpis['grid_limit_violations']}  "
                  f"rss {run['peak_rss_mb']:.0f} MB  {run['run_s']:.0f} s", flush=True)
    result = summarise(runs)
    result.update(runs=sorted(runs, key=lambda r: (r["site"], r["season"], r["controller"])),
                  days=args.days, step_min=args.step_min, wall_s=round(time.perf_counter() - began, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
