"""`gridctl run sites/<name> [--db DSN]`: the control service of one site on the wall clock."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from datetime import timedelta
from pathlib import Path

from gridctl import logs, paths
from gridctl.aio import exit_now

log = logging.getLogger("gridctl.run")
METRICS_TOKEN_ENV = "GRIDCTL_METRICS_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the control service of a site")
    parser.add_argument("sites", type=Path, nargs="+", metavar="SITE", help="site folder or its site.yaml")
    parser.add_argument("--db", default=None,
                        help="PostgreSQL DSN or SQLite file (default: the embedded SQLite in the data directory)")
    parser.add_argument("--port-offset", type=int, default=0, help="move every device port (simulated sites)")
    parser.add_argument("--host", default="127.0.0.1", help="address of the API, the web pages and /metrics")
    parser.add_argument("--port", type=int, default=8080, help="port of the API, the web pages and /metrics")
    add_metrics_options(parser)
    parser.add_argument("--dispatch-s", type=float, default=60.0, help="seconds between dispatch cycles")
    parser.add_argument("--optimise-s", type=float, default=900.0, help="seconds between optimisations")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-listen", metavar="HOST:PORT", default=None,
                        help="serve /metrics on this address only, not with the API (e.g. an internal interface)")
    parser.add_argument("--metrics-token-file", type=Path, default=None,
                        help="/metrics answers only requests with 'Authorization: Bearer <the file's token>' "
                             f"(or set {METRICS_TOKEN_ENV})")


def metrics_access(args: argparse.Namespace):  # -> gridctl.service.web.MetricsAccess
    """/metrics as the options say: a token from the file or the environment, and its own listener."""
    from gridctl.service.web import MetricsAccess

    token = os.environ.get(METRICS_TOKEN_ENV) or None
    if args.metrics_token_file is not None:
        try:
            token = args.metrics_token_file.read_text().strip()
        except OSError as error:
            raise SystemExit(f"--metrics-token-file: {error}") from None
        if not token:
            raise SystemExit(f"--metrics-token-file: {args.metrics_token_file} is empty")
    listen = None
    if args.metrics_listen is not None:
        try:
            listen = MetricsAccess.parse_listen(args.metrics_listen)
        except ValueError as error:
            raise SystemExit(f"--metrics-listen: {error}") from None
    return MetricsAccess(token=token, listen=listen)


def run(args: argparse.Namespace) -> int:
    # Imported here: the service pulls in every protocol stack, the optimiser and the API.
    from gridctl.service.runner import Cadence, SiteOptions

    logs.configure(args.log_level)
    db = args.db or str(paths.default_database())
    if args.db is None:
        paths.data_dir().mkdir(parents=True, exist_ok=True)
    cadence = Cadence(dispatch=timedelta(seconds=args.dispatch_s), optimise=timedelta(seconds=args.optimise_s))
    sites = [SiteOptions(site=path, port_offset=args.port_offset, cadence=cadence) for path in args.sites]
    code = asyncio.run(_main(sites, db, args.host, args.port, metrics_access(args)))
    # Stopped and flushed: leave without waiting for a solve nobody will follow.
    exit_now(code)


async def _main(sites: list, db: str, address: str, port: int, metrics) -> int:
    from gridctl.service.runner import ServiceHost
    from gridctl.service.web import attach_api, serve_until_stopped

    host = ServiceHost(sites, db, paths.spool_dir())
    await host.open_history()
    app = await attach_api(host, metrics)

    def announce() -> None:
        log.info("serving on http://%s:%d", address, port)
        if metrics.listen is not None:
            log.info("metrics on http://%s:%d/metrics", *metrics.listen)

    await serve_until_stopped(host, app, address, port, announce=announce, metrics=metrics)
    return 0
