"""`gridctl simulate sites/<name> --days N --controller C --seed S [--json]`: closed-loop simulation."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

from gridctl import logs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simulate", help="run the control cycle on simulated time against a simulated site")
    parser.add_argument("site", type=Path, help="site folder or its site.yaml")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--controller", choices=["baseline", "gridctl", "mpc", "oracle"], default="gridctl",
                        help="baseline: thermostats and timers; gridctl; mpc: gridctl's loop fed the true future "
                             "and plant; oracle: the whole run planned at once knowing both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=datetime.fromisoformat,
                        default=datetime.fromisoformat("2026-01-12T00:00+01:00"),
                        help="local start, ISO 8601 with offset (default: a winter Monday)")
    parser.add_argument("--step-min", type=float, default=5.0, help="control step in minutes")
    parser.add_argument("--optimise-every-min", type=float, default=60.0)
    parser.add_argument("--history-days", type=float, default=14.0,
                        help="days of history gridctl's forecasts hold at the start (a warm-up)")
    parser.add_argument("--no-weather-forecast", action="store_true",
                        help="forecast the sky from the site's own measurements only, without a weather service")
    parser.add_argument("--ideal-instruments", action="store_true",
                        help="devices report true values and never drop out (no sensor errors, no outages)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridctl.simulate.loop import SimulationOptions, simulate

    logs.configure("warning")
    if args.start.tzinfo is None:
        raise SystemExit("--start needs a UTC offset, e.g. 2026-07-06T00:00+02:00")
    options = SimulationOptions(site=args.site, controller=args.controller, days=args.days, seed=args.seed,
                                start=args.start, step=timedelta(minutes=args.step_min),
                                optimise_every=timedelta(minutes=args.optimise_every_min),
                                history_days=args.history_days, weather_forecast=not args.no_weather_forecast,
                                instruments=not args.ideal_instruments)
    result = asyncio.run(simulate(options))
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    kpis = result.kpis.as_dict()
    print(f"{result.site_id} · {result.controller} · {result.start:%Y-%m-%d %H:%M} → {result.end:%Y-%m-%d %H:%M} UTC"
          f" · seed {result.seed} · {result.wall_s:.1f} s")
    for key, value in kpis.items():
        print(f"  {key:<28} {value}")
    print(f"  {'optimisations':<28} {result.optimisations} ({result.optimiser_failures} failed)")
    print(f"  {'writes':<28} {result.writes}")
    return 0
