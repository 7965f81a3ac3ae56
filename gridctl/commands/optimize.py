"""`gridctl optimize PROBLEM.json [--out schedule.csv]`: solve a scheduling problem and report it.

The problem format is optimizer/FORMAT.md (a file holding {"problem": ...} is accepted too, as the
golden cases are). Prints the objective breakdown and every violation. Exit code: 0 solved, 1 solved
but a hard limit is broken, 2 unreadable or invalid problem or options (refused before solving), 3 no
schedule found.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gridctl.config.loader import data_path
from gridctl.config.yamlsource import format_path
from optimizer import Problem, Settings, solve


class ProblemFileError(Exception):
    """A problem file that cannot be read as a problem; the message names the file and the field."""


def _number(text: str, what: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(f"{text!r}: {what}")
    return value


def _seconds(text: str) -> float:
    return _number(text, "give a positive number of seconds", positive=True)


def _gap(text: str) -> float:
    return _number(text, "give a relative gap of 0 or more, e.g. 0.001", positive=False)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("optimize", help="solve a scheduling problem given as JSON")
    parser.add_argument("problem", metavar="PROBLEM.json", help="problem file (optimizer/FORMAT.md)")
    parser.add_argument("--out", metavar="CSV", help="write the schedule's setpoints to this CSV file")
    parser.add_argument("--time-limit", type=_seconds, default=None, help="solver time limit in seconds")
    parser.add_argument("--gap", type=_gap, default=None, help="relative MIP gap, e.g. 0.001")
    parser.add_argument("--solver", choices=["highs", "cbc"], default=None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def _describe(exc: ValidationError, data: Any) -> str:
    """One line per field. A series is a number or a list, so pydantic reports a bad value once per
    branch: keep the deepest error, and the first one for each field."""
    found: dict[tuple, str] = {}
    for detail in exc.errors(include_url=False):
        path = data_path(data, detail["loc"])
        got = detail.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {json.dumps(got, default=str)})"
        found.setdefault(path, f"  {format_path(path)}: {detail['msg']}{shown}")
    deeper = {p[:k] for p in found for k in range(len(p))}
    return "\n".join(line for path, line in found.items() if path not in deeper)


def load_problem(path: str | Path) -> Problem:
    """Read a problem file; every error is a ProblemFileError naming the file, and the field when there is one."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProblemFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemFileError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProblemFileError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise ProblemFileError(f"{path}: invalid JSON: nested too deeply") from None
    if isinstance(data, dict) and "problem" in data and "site" not in data:
        data = data["problem"]
    try:
        return Problem.model_validate(data)
    except ValidationError as exc:
        raise ProblemFileError(f"{path}: not a valid problem:\n{_describe(exc, data)}") from None


def _out_problem(out: str) -> str | None:
    target = Path(out)
    if target.is_dir():
        return f"--out {out}: is a folder, give a file name"
    folder = target.parent
    if not folder.is_dir():
        return f"--out {out}: folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"--out {out}: folder {folder} is not writable"
    return None


def run(args: argparse.Namespace) -> int:
    if args.out and (problem := _out_problem(args.out)):
        print(problem, file=sys.stderr)
        return 2
    try:
        problem = load_problem(args.problem)
    except ProblemFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    overrides: dict[str, object] = {}
    if args.time_limit is not None:
        overrides["time_limit_s"] = args.time_limit
    if args.gap is not None:
        overrides["mip_gap"] = args.gap
    if args.solver is not None:
        overrides["solver"] = args.solver
    settings = Settings(**overrides)
    schedule = solve(problem, settings)
    if args.json:
        report = schedule.summary()
        if not schedule.has_solution:
            report["objective_eur"] = None  # no schedule has no objective, not one of 0
        print(json.dumps(report, indent=1))
    else:
        print(schedule.report())
    if not schedule.has_solution:
        if schedule.status == "no_solution":
            print(f"no schedule found within the time limit of {settings.time_limit_s:g} s: "
                  f"give the solver more time with --time-limit", file=sys.stderr)
        else:
            print(f"the solver found no schedule ({schedule.status})", file=sys.stderr)
        return 3
    if args.out:
        schedule.setpoints.to_csv(args.out, index_label="time")
        if not args.json:
            print(f"schedule: {len(schedule.setpoints)} steps x {schedule.setpoints.shape[1]} columns -> {args.out}")
    return 1 if schedule.hard_violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridctl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["optimize", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
