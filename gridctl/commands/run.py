"""`gridctl run sites/<name> [--db DSN]`: the control service of one site on the wall clock."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from gridctl import logs, paths
from gridctl.service.runner import ServiceOptions, SiteService
from gridctl.service.web import serve

log = logging.getLogger("gridctl.run")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the control service of a site")
    parser.add_argument("site", type=Path, help="site folder or its site.yaml")
    parser.add_argument("--db", default=None,
                        help="PostgreSQL DSN or SQLite file (default: the embedded SQLite in the data directory)")
    parser.add_argument("--port-offset", type=int, default=0, help="move every device port (simulated sites)")
    parser.add_argument("--host", default="127.0.0.1", help="address of the API and /metrics")
    parser.add_argument("--port", type=int, default=8080, help="port of the API and /metrics (0: none)")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    db = args.db or str(paths.default_database())
    if args.db is None:
        paths.data_dir().mkdir(parents=True, exist_ok=True)
    options = ServiceOptions(site=args.site, db=db, spool_dir=paths.spool_dir(), port_offset=args.port_offset)
    return asyncio.run(_main(options, args.host, args.port))


async def _main(options: ServiceOptions, host: str, port: int) -> int:
    service = SiteService(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    web = asyncio.create_task(serve([service], service.historian, host, port, stop)) if port else None
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if web is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await web
        await service.stop()
    return 0
