"""The `gridctl` command: each module of `gridctl.commands` registers its own sub-command.

Whatever a command meets (a broken site file, an unreachable database, a missing file), it ends here as
one located line per problem on standard error and a non-zero exit, never a traceback; the traceback of
an unexpected error is logged at debug level.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from typing import TypeVar

import gridctl.commands
from gridctl import logs
from gridctl.config import SiteError
from gridctl.history.base import HistorianUnavailable

log = logging.getLogger("gridctl")
E = TypeVar("E", bound=BaseException)
# Exit codes: 1 the input is wrong (site file, arguments, files), 2 the database cannot be used.
EXIT_INPUT = 1
EXIT_DATABASE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridctl",
        description="Smart-grid and building-automation control for eco-districts.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(gridctl.commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"gridctl.commands.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Commands that run the service configure their own logs; the others say what failed in their own
    # words, and log only errors as plain lines.
    try:
        logs.configure(getattr(args, "log_level", "error"), json_lines=False)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BaseException as error:  # every failure becomes located lines and an exit code
        return report(args, error)


def report(args: argparse.Namespace, error: BaseException) -> int:
    """Print what went wrong as one line per problem; the exit code that says which kind of problem."""
    command = f"gridctl {args.command}"
    problems = _site_problems(error)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_INPUT
    if isinstance(error, SystemExit):
        if isinstance(error.code, str):
            print(f"{command}: {error.code}", file=sys.stderr)
            return EXIT_INPUT
        return int(error.code or 0)
    unavailable = _find(error, HistorianUnavailable)
    if unavailable is not None:
        where = describe_database(getattr(args, "db", None))
        print(f"{command}: the database {where}cannot be used: {unavailable}", file=sys.stderr)
        return EXIT_DATABASE
    os_error = _find(error, OSError)
    if os_error is not None and os_error.filename is not None:
        print(f"{command}: {os_error.filename}: {os_error.strerror or os_error}", file=sys.stderr)
        return EXIT_INPUT
    log.debug("%s failed", command, exc_info=error)
    if isinstance(error, ValueError):
        print(f"{command}: {error}", file=sys.stderr)
    else:
        print(f"{command}: {type(error).__name__}: {error} (--log-level debug shows where)", file=sys.stderr)
    return EXIT_INPUT


def _site_problems(error: BaseException) -> list[str]:
    site_error = _find(error, SiteError)
    return [str(p) for p in site_error.problems] if site_error is not None else []


def _find(error: BaseException, kind: type[E]) -> E | None:
    """`error` or its cause, context or a member of its group that is a `kind`."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def describe_database(target: object) -> str:
    """A database as the user named it, without its password: `'host=db port=5432 dbname=gridctl' `."""
    if not target:
        return ""
    text = str(target)
    from gridctl.history import is_postgres_dsn

    if is_postgres_dsn(text):
        try:
            import psycopg

            params = psycopg.conninfo.conninfo_to_dict(text)
            params.pop("password", None)
            text = " ".join(f"{k}={v}" for k, v in params.items())
        except Exception:  # an unparsable DSN: name none of it
            text = "given by --db"
    return f"{text!r} "


if __name__ == "__main__":
    sys.exit(main())
