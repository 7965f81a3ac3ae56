"""`gridctl users ...`: issue, list and revoke the API's bearer tokens."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta

from gridctl.history import HistorianUnavailable

_ID = r"[a-z0-9][a-z0-9_.-]*"
_DWELLING = re.compile(rf"^{_ID}/{_ID}$")
_SITE = re.compile(rf"^({_ID}|\*)$")
API_SCHEMA_VERSION = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("users", help="API users and their bearer tokens")
    commands = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="create a user and print its token (shown once)")
    add.add_argument("name", help="a unique name, e.g. an e-mail address")
    add.add_argument("--role", required=True, choices=["resident", "operator", "manager", "admin"])
    add.add_argument("--scope", required=True, action="append", metavar="SCOPE",
                     help="resident: <site>/<dwelling>; others: a site id or '*' (repeatable)")
    add.add_argument("--days", type=int, default=365, help="days until the token expires (default 365)")
    add.add_argument("--db", required=True, metavar="DSN", help="SQLite file path or PostgreSQL DSN")
    add.set_defaults(func=lambda args: _run(_add(args)))

    revoke = commands.add_parser("revoke", help="revoke a user's token")
    revoke.add_argument("name")
    revoke.add_argument("--db", required=True, metavar="DSN")
    revoke.set_defaults(func=lambda args: _run(_revoke(args)))

    listing = commands.add_parser("list", help="list users (never their tokens)")
    listing.add_argument("--db", required=True, metavar="DSN")
    listing.set_defaults(func=lambda args: _run(_list(args)))


def _run(coroutine) -> int:
    try:
        return asyncio.run(coroutine)
    except HistorianUnavailable as exc:
        print(f"gridctl users: database unavailable: {exc}", file=sys.stderr)
        return 2


async def _store(target: str):
    from gridctl.api.db import open_database
    from gridctl.api.store import ApiStore

    db = open_database(target)
    await db.open()
    rows = await db.fetch("SELECT count(*) FROM schema_migrations WHERE version = ?", [API_SCHEMA_VERSION]) \
        if await _has_migrations(db) else [(0,)]
    if not rows[0][0]:
        await db.close()
        print("gridctl users: the API's tables are missing: run `gridctl db upgrade` first", file=sys.stderr)
        return None
    return ApiStore(db)


async def _has_migrations(db) -> bool:
    try:
        await db.fetch("SELECT 1 FROM schema_migrations LIMIT 1")
    except Exception:
        return False
    return True


def check_scope(role: str, scope: list[str]) -> str | None:
    """Why a scope does not fit the role, or None."""
    pattern, shape = (_DWELLING, "<site>/<dwelling>") if role == "resident" else (_SITE, "a site id or '*'")
    for entry in scope:
        if not pattern.match(entry):
            return f"scope {entry!r} of a {role} must be {shape}"
    return None


async def _add(args: argparse.Namespace) -> int:
    from gridctl.api.store import Role

    problem = check_scope(args.role, args.scope)
    if problem:
        print(f"gridctl users: {problem}", file=sys.stderr)
        return 1
    if args.days <= 0:
        print("gridctl users: --days must be positive", file=sys.stderr)
        return 1
    store = await _store(args.db)
    if store is None:
        return 1
    try:
        if await store.user(args.name) is not None:
            print(f"gridctl users: a user named {args.name!r} exists", file=sys.stderr)
            return 1
        user, token = await store.add_user(args.name, Role(args.role), args.scope, datetime.now(UTC),
                                           timedelta(days=args.days))
    finally:
        await store.db.close()
    print(f"user {user.name} ({user.role}, scope {', '.join(user.scope)}) expires {user.expires_at:%Y-%m-%d}",
          file=sys.stderr)
    print("token (shown only now; store it safely):", file=sys.stderr)
    print(token)
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    store = await _store(args.db)
    if store is None:
        return 1
    try:
        done = await store.revoke(args.name, datetime.now(UTC))
    finally:
        await store.db.close()
    if not done:
        print(f"gridctl users: no active user named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.name}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    store = await _store(args.db)
    if store is None:
        return 1
    try:
        users = await store.users()
    finally:
        await store.db.close()
    now = datetime.now(UTC)
    for user in users:
        state = "revoked" if user.revoked_at else ("expired" if now >= user.expires_at else "active")
        print(f"{user.name}\t{user.role}\t{','.join(user.scope)}\t{state}\texpires {user.expires_at:%Y-%m-%d}")
    return 0
