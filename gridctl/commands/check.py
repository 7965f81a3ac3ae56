"""`gridctl check SITE...`: validate site descriptions and report every problem."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from gridctl.config import read_site


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="validate site descriptions")
    parser.add_argument("sites", nargs="+", metavar="SITE", help="site folder or its site.yaml")
    parser.add_argument("--json", action="store_true", help="print problems as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    failed = False
    report = []
    for path in args.sites:
        site, problems = read_site(path)
        failed = failed or bool(problems)
        if args.json:
            report.append({"site": path, "ok": not problems, "problems": [asdict(p) for p in problems]})
            continue
        for problem in problems:
            print(problem, file=sys.stdout)
        if problems:
            print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        elif site is not None:
            point_count = sum(len(d.points) for d in site.devices)
            print(f"{path}: ok — {len(site.devices)} devices, {point_count} points, {len(site.assets)} assets, "
                  f"{len(site.dwellings)} dwellings")
    if args.json:
        print(json.dumps(report, indent=2))
    return 1 if failed else 0
