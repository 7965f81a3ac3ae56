"""`gridctl backtest SITE --data DIR|--db DSN --from DATE --to DATE`: replay a recorded period."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gridctl import logs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backtest", help="replay a site's recorded history: what gridctl would have done and saved",
        description="Replays the recorded load, PV, prices and carbon of a site with its flexible assets "
                    "simulated from the site file, under the baseline, gridctl (forecasting only from the past) "
                    "and the oracle (knowing everything), and compares their KPIs.")
    parser.add_argument("site", type=Path, help="site folder or its site.yaml")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="CSV file, or folder of CSV files (with backtest.yaml)")
    source.add_argument("--db", help="history database: SQLite path or PostgreSQL DSN")
    parser.add_argument("--from", dest="start", required=True, help="first local day (YYYY-MM-DD) or instant")
    parser.add_argument("--to", dest="end", required=True, help="last local day, included (or an instant, excluded)")
    parser.add_argument("--controller", action="append", choices=["baseline", "gridctl", "oracle"],
                        help="repeat for several (default: all three)")
    parser.add_argument("--sessions", type=Path, help="EV session log (charger, arrival, departure, energy [kWh])")
    parser.add_argument("--step-min", type=float, default=60.0, help="with --db: the step to replay (default 60)")
    parser.add_argument("--baseline", choices=["uncontrolled", "rules"], default="uncontrolled",
                        help="uncontrolled: batteries idle, cars charged on arrival (default); "
                             "rules: the equipment's own rules (batteries in self-consumption)")
    parser.add_argument("--replan-min", type=float, help="gridctl plans every N minutes (default: every step)")
    parser.add_argument("--initial-soc", type=float, default=50.0, help="batteries' state of charge at the start (%%)")
    parser.add_argument("--oracle-block-days", type=float,
                        help="plan the oracle in blocks of N days (then it is not a bound); default: at once")
    parser.add_argument("--workers", type=int, help="processes (default: one per core, at most one per controller)")
    parser.add_argument("--out", type=Path, help="folder for setpoints.csv, daily.csv and week.html")
    parser.add_argument("--week", type=date.fromisoformat, help="first local day of the week plotted in week.html")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no progress bar")
    parser.set_defaults(func=run)


def _moment(text: str, tz: ZoneInfo, end: bool) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(ZoneInfo("UTC"))
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(0), tz).astimezone(ZoneInfo("UTC"))


def run(args: argparse.Namespace) -> int:
    from gridctl.backtest import BacktestError, BacktestSettings, DataError, load_data, run_backtest
    from gridctl.backtest.dbdata import load_history
    from gridctl.backtest.report import daily_csv, setpoints_csv, table, week_html
    from gridctl.config import read_site

    logs.configure("warning")
    site, problems = read_site(args.site)
    if site is None or problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        start, end = _moment(args.start, site.tz, False), _moment(args.end, site.tz, True)
    except ValueError as error:
        print(f"--from/--to: {error}", file=sys.stderr)
        return 2
    try:
        if args.data is not None:
            recording = load_data(args.data, site, args.sessions)
        else:
            recording = asyncio.run(load_history(args.db, site, start, end, timedelta(minutes=args.step_min),
                                                 args.sessions))
        settings = BacktestSettings(
            start=start, end=end, baseline=args.baseline, initial_soc_pct=args.initial_soc,
            replan_every=timedelta(minutes=args.replan_min) if args.replan_min else None,
            oracle_block_days=args.oracle_block_days)
        result = run_backtest(site, recording, settings, args.controller, args.workers,
                              None if args.json else sys.stderr)
    except DataError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    except BacktestError as error:
        print(f"backtest: {error}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        setpoints_csv(result, args.out / "setpoints.csv")
        daily_csv(result, args.out / "daily.csv")
        week_html(result, args.out / "week.html", args.week, site.tz)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(table(result))
        if args.out is not None:
            print(f"written: {args.out / 'setpoints.csv'}, {args.out / 'daily.csv'}, {args.out / 'week.html'}")
    return 0
