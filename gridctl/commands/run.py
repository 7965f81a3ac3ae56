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
    cluster = parser.add_argument_group(
        "sharing sites", "several instances (on one or several machines) share the sites given to each through "
                         "leases in the PostgreSQL database; without --cluster an instance has no peers and needs "
                         "no lease, so it keeps controlling through a database outage")
    cluster.add_argument("--cluster", action="store_true",
                         help="share the sites with the other instances started with --cluster on the same database")
    cluster.add_argument("--lease-s", type=_seconds, default=20.0,
                         help="site lease length (default 20): another instance takes a site over within about "
                              "this long after its owner died or lost the database")
    cluster.add_argument("--renew-s", type=_seconds, default=None, help="lease renewal period (default lease / 4)")
    cluster.add_argument("--write-budget-s", type=_seconds, default=None,
                         help="longest a device write may take, abandoned past it (default: from the devices' "
                              "timeouts and retries)")
    cluster.add_argument("--live-s", type=_seconds, default=5.0,
                         help="how often the owner publishes a site's live values for the other instances")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s is not between 0 and 3600")
    return value


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
    cluster = None
    if args.cluster:
        from gridctl.cluster.coordinator import ClusterSettings
        from gridctl.history import is_postgres_dsn

        if not is_postgres_dsn(db):
            raise SystemExit("--cluster needs a PostgreSQL database (--db postgresql://...): instances share sites "
                             "through it")
        cluster = ClusterSettings(lease_s=args.lease_s, renew_s=args.renew_s or args.lease_s / 4,
                                  write_budget_s=args.write_budget_s, live_s=args.live_s)
    code = asyncio.run(_main(sites, db, args.host, args.port, metrics_access(args), cluster))
    # Stopped and flushed: leave without waiting for a solve nobody will follow.
    exit_now(code)


async def _main(sites: list, db: str, address: str, port: int, metrics, cluster=None) -> int:
    from gridctl.service.runner import ServiceHost
    from gridctl.service.web import attach_api, serve_until_stopped

    try:
        host = ServiceHost(sites, db, paths.spool_dir(), cluster=cluster)
    except ValueError as error:  # lease timings that would let two instances write at once
        raise SystemExit(str(error)) from None
    await host.open_history()
    app = await attach_api(host, metrics)

    def announce() -> None:
        log.info("serving on http://%s:%d", address, port)
        if metrics.listen is not None:
            log.info("metrics on http://%s:%d/metrics", *metrics.listen)

    await serve_until_stopped(host, app, address, port, announce=announce, metrics=metrics)
    return 0
