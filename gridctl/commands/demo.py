"""`gridctl demo`: the demonstrators on simulated devices, accelerated, with the API and web pages."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from gridctl import logs, paths
from gridctl.aio import exit_now
from gridctl.commands.run import add_metrics_options, metrics_access

SITES = Path(__file__).resolve().parents[2] / "sites"
DEMONSTRATORS = ("zac-saint-sauveur", "zac-union", "zac-haute-deule")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the demonstrators on simulated devices with the web pages")
    parser.add_argument("sites", type=Path, nargs="*", metavar="SITE",
                        help="site folders (default: the three demonstrators)")
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: in the data directory)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--speed", type=float, default=360.0,
                        help="simulated seconds per wall second (default 360: an hour every 10 s)")
    parser.add_argument("--backfill-days", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    add_metrics_options(parser)
    parser.add_argument("--log-level", default="warning")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridctl.demo import run_demo

    logs.configure(args.log_level, json_lines=False)
    # At hundreds of times real time a job now and then finds its previous run still going: expected.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    sites = args.sites or [SITES / name for name in DEMONSTRATORS]
    missing = [str(s) for s in sites if not (s / "site.yaml").is_file() and not s.is_file()]
    if missing:
        raise SystemExit(f"no site description at {', '.join(missing)}")
    db = args.db or paths.data_dir() / "demo.sqlite3"
    code = asyncio.run(run_demo(sites, db=db, address=args.host, port=args.port, speed=args.speed,
                                backfill_days=args.backfill_days, seed=args.seed, metrics=metrics_access(args)))
    # Stopped and flushed: leave without waiting for a solve nobody will follow.
    exit_now(code)
