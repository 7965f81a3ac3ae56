"""`gridctl optimize PROBLEM.json [--out schedule.csv]`: solve a scheduling problem and report it.

The problem format is optimizer/FORMAT.md (a file holding {"problem": ...} is accepted too, as the
golden cases are). Prints the objective breakdown and every violation. Exit code: 0 solved, 1 solved
but a hard limit is broken, 2 unreadable or invalid problem, 3 no schedule found.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from optimizer import Problem, Settings, solve


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("optimize", help="solve a scheduling problem given as JSON")
    parser.add_argument("problem", metavar="PROBLEM.json", help="problem file (optimizer/FORMAT.md)")
    parser.add_argument("--out", metavar="CSV", help="write the schedule's setpoints to this CSV file")
    parser.add_argument("--time-limit", type=float, default=None, help="solver time limit in seconds")
    parser.add_argument("--gap", type=float, default=None, help="relative MIP gap, e.g. 0.001")
    parser.add_argument("--solver", choices=["highs", "cbc"], default=None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def load_problem(path: str | Path) -> Problem:
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and "problem" in data and "site" not in data:
        data = data["problem"]
    return Problem.model_validate(data)


def run(args: argparse.Namespace) -> int:
    try:
        problem = load_problem(args.problem)
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        print(f"{args.problem}: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, object] = {}
    if args.time_limit is not None:
        overrides["time_limit_s"] = args.time_limit
    if args.gap is not None:
        overrides["mip_gap"] = args.gap
    if args.solver is not None:
        overrides["solver"] = args.solver
    schedule = solve(problem, Settings(**overrides))
    if args.json:
        print(json.dumps(schedule.summary(), indent=1))
    else:
        print(schedule.report())
    if not schedule.has_solution:
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
