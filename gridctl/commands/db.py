"""`gridctl db ...`: create or upgrade the history database, sync the point catalogue, maintain rollups
and retention. `--db` is a SQLite file path or a PostgreSQL DSN (TimescaleDB)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from gridctl.config import SiteError, load_site
from gridctl.history import HistorianUnavailable, SharedSeries, open_historian
from gridctl.history.migrations import SITE_KEYED_VERSION


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="history database: schema, catalogue, rollups, retention")
    commands = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--db", required=True, metavar="DSN", help="SQLite file path or PostgreSQL DSN")
        return sub

    upgrade = add("upgrade", "apply pending schema migrations (and sync sites given with --site)")
    upgrade.add_argument("--site", action="append", default=[], metavar="SITE",
                         help="site folder to sync; give every site that wrote into the database, so that "
                              "keying points by site can tell which series they shared")
    upgrade.set_defaults(func=lambda args: _run(_upgrade(args)))

    sync = add("sync", "bring the point catalogue in line with site files")
    sync.add_argument("sites", nargs="+", metavar="SITE")
    sync.add_argument("--retention-days", type=int, default=None, help="raw readings kept this many days")
    sync.set_defaults(func=lambda args: _run(_sync(args)))

    status = add("status", "schema version and server capabilities, as JSON")
    status.set_defaults(func=lambda args: _run(_status(args)))

    rollup = add("rollup", "recompute the rollup buckets touched since the last run")
    rollup.set_defaults(func=lambda args: _run(_rollup(args)))

    retention = add("retention", "drop raw readings past each site's retention")
    retention.set_defaults(func=lambda args: _run(_retention(args)))


def _run(coroutine) -> int:
    try:
        return asyncio.run(coroutine)
    except HistorianUnavailable as exc:
        print(f"gridctl db: database unavailable: {exc}", file=sys.stderr)
        return 2
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1


async def _upgrade(args: argparse.Namespace) -> int:
    sites = [load_site(path) for path in args.site]
    async with open_historian(args.db) as historian:
        applied = await historian.upgrade(sites)
        version = await historian.schema_version()
        print(f"schema at version {version}" + (f" (applied {', '.join(map(str, applied))})" if applied else ""))
        if SITE_KEYED_VERSION in applied:
            _print_shared(await historian.shared_series())
        for site in sites:
            await historian.sync_site(site)
            print(f"{site.id}: {len(site.all_points())} points, {len(site.dwellings)} dwellings")
    return 0


def _print_shared(shared: list[SharedSeries]) -> None:
    """The series several sites had written into: they stay with the site that owned them last."""
    if not shared:
        print("points are now keyed by site; no series was shared by several sites")
        return
    print(f"points are now keyed by site; {len(shared)} series had been written by several sites and cannot be "
          "split: each stays with the site that owned it last")
    width = max(len(s.address) for s in shared)
    print(f"  {'site':<20} {'address':<{width}} {'readings':>10}  written by")
    for s in shared:
        print(f"  {s.site_id:<20} {s.address:<{width}} {s.readings:>10,}  {', '.join(s.claimed_by)}")


async def _sync(args: argparse.Namespace) -> int:
    from gridctl.history import site_entry

    async with open_historian(args.db) as historian:
        if await historian.schema_version() == 0:
            print("gridctl db: the schema is missing: run `gridctl db upgrade` first", file=sys.stderr)
            return 1
        for path in args.sites:
            site = load_site(path)
            entry = site_entry(site) if args.retention_days is None else site_entry(site, args.retention_days)
            await historian.sync_site(entry)
            print(f"{site.id}: {len(entry.points)} points, {len(entry.dwellings)} dwellings")
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with open_historian(args.db) as historian:
        report = {"schema_version": await historian.schema_version(), **(await historian.capabilities()),
                  "shared_series": [dataclasses.asdict(s) for s in await historian.shared_series()]}
    print(json.dumps(report, indent=2, default=str))
    return 0


async def _rollup(args: argparse.Namespace) -> int:
    async with open_historian(args.db) as historian:
        print(f"{await historian.refresh_rollups()} hourly buckets recomputed")
    return 0


async def _retention(args: argparse.Namespace) -> int:
    async with open_historian(args.db) as historian:
        outcome = await historian.apply_retention()
    print(json.dumps({"raw_cutoffs": outcome.raw_cutoffs, "chunks_dropped": outcome.chunks_dropped,
                      "rows_deleted": outcome.rows_deleted, "hourly_rows_deleted": outcome.hourly_rows_deleted},
                     default=str))
    return 0
