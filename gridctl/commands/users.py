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
# Sign-in (passwords, sessions, activation links) came with version 103 of the API's tables.
API_SCHEMA_VERSION = 103


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
    sign_in = add.add_mutually_exclusive_group()
    sign_in.add_argument("--password-stdin", action="store_true",
                         help="read the person's password for the pages from the first line of standard input")
    sign_in.add_argument("--activation-link", action="store_true",
                         help="print a one-time link (valid 7 days) where the person sets their password")
    add.add_argument("--base-url", default="http://127.0.0.1:8080",
                     help="where the pages are served, for the activation link (default %(default)s)")
    add.set_defaults(func=lambda args: _run(_add(args)))

    link = commands.add_parser("link", help="print a new one-time activation link (a forgotten password)")
    link.add_argument("name")
    link.add_argument("--base-url", default="http://127.0.0.1:8080")
    link.add_argument("--db", required=True, metavar="DSN")
    link.set_defaults(func=lambda args: _run(_link(args)))

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
    from gridctl.api.signin import PasswordRejected, SignIn, check_password
    from gridctl.api.store import Role

    problem = check_scope(args.role, args.scope)
    if problem:
        print(f"gridctl users: {problem}", file=sys.stderr)
        return 1
    if args.days <= 0:
        print("gridctl users: --days must be positive", file=sys.stderr)
        return 1
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            check_password(args.name, password)
        except PasswordRejected as exc:
            print(f"gridctl users: {exc}", file=sys.stderr)
            return 1
    store = await _store(args.db)
    if store is None:
        return 1
    link = None
    try:
        if await store.user(args.name) is not None:
            print(f"gridctl users: a user named {args.name!r} exists", file=sys.stderr)
            return 1
        now = datetime.now(UTC)
        user, token = await store.add_user(args.name, Role(args.role), args.scope, now, timedelta(days=args.days))
        signin = SignIn(store)
        if password is not None:
            await signin.set_password(user, password, now)
        elif args.activation_link:
            link = activation_url(args.base_url, await signin.new_activation(user, now))
    finally:
        await store.db.close()
    print(f"user {user.name} ({user.role}, scope {', '.join(user.scope)}) expires {user.expires_at:%Y-%m-%d}",
          file=sys.stderr)
    if password is not None:
        print("password set: the user can sign in on /ui/login", file=sys.stderr)
    if link is not None:
        print(f"activation link (one use, 7 days): {link}", file=sys.stderr)
    print("token (shown only now; store it safely):", file=sys.stderr)
    print(token)
    return 0


def activation_url(base_url: str, token: str) -> str:
    # The token rides in the fragment, which browsers never send to servers nor put in Referer headers.
    return f"{base_url.rstrip('/')}/ui/activate#token={token}"


async def _link(args: argparse.Namespace) -> int:
    from gridctl.api.signin import SignIn

    store = await _store(args.db)
    if store is None:
        return 1
    try:
        user = await store.user(args.name)
        now = datetime.now(UTC)
        if user is None or not user.active(now):
            print(f"gridctl users: no active user named {args.name!r}", file=sys.stderr)
            return 1
        token = await SignIn(store).new_activation(user, now)
    finally:
        await store.db.close()
    print(activation_url(args.base_url, token))
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
