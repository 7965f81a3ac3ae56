"""`gridctl run sites/<name> [--db DSN]`: the control service of one site on the wall clock."""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from gridctl import logs, paths

log = logging.getLogger("gridctl.run")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the control service of a site")
    parser.add_argument("sites", type=Path, nargs="+", metavar="SITE", help="site folder or its site.yaml")
    parser.add_argument("--db", default=None,
                        help="PostgreSQL DSN or SQLite file (default: the embedded SQLite in the data directory)")
    parser.add_argument("--port-offset", type=int, default=0, help="move every device port (simulated sites)")
    parser.add_argument("--host", default="127.0.0.1", help="address of the API, the web pages and /metrics")
    parser.add_argument("--port", type=int, default=8080, help="port of the API, the web pages and /metrics")
    parser.add_argument("--dispatch-s", type=float, default=60.0, help="seconds between dispatch cycles")
    parser.add_argument("--optimise-s", type=float, default=900.0, help="seconds between optimisations")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the service pulls in every protocol stack, the optimiser and the API.
    from gridctl.service.runner import Cadence, SiteOptions

    logs.configure(args.log_level)
    db = args.db or str(paths.default_database())
    if args.db is None:
        paths.data_dir().mkdir(parents=True, exist_ok=True)
    cadence = Cadence(dispatch=timedelta(seconds=args.dispatch_s), optimise=timedelta(seconds=args.optimise_s))
    sites = [SiteOptions(site=path, port_offset=args.port_offset, cadence=cadence) for path in args.sites]
    return asyncio.run(_main(sites, db, args.host, args.port))


async def _main(sites: list, db: str, address: str, port: int) -> int:
    from gridctl.service.runner import ServiceHost
    from gridctl.service.web import attach_api, serve_until_stopped

    host = ServiceHost(sites, db, paths.spool_dir())
    await host.open_history()
    app = await attach_api(host)
    await serve_until_stopped(host, app, address, port,
                              announce=lambda: log.info("serving on http://%s:%d", address, port))
    return 0
