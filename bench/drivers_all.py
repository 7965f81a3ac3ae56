"""Read throughput of the three protocol drivers, each against a hand-written client of its library.

Runs `bench/drivers_modbus.py`, `bench/drivers_bacnet.py` and `bench/drivers_opcua.py` one after the
other (each starts its own simulated device in another process) and prints one JSON line combining
their results: `{"modbus": {...}, "bacnet": {...}, "opcua": {...}}`.
`python bench/drivers_all.py [--duration S] [--rounds N] [--only modbus,bacnet,opcua]`.
(Not `bench/drivers.py`: a module of that name next to the benches would shadow the `drivers` package
for any of them started with the repository on PYTHONPATH.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PROTOCOLS = ("modbus", "bacnet", "opcua")


def _bench(protocol: str) -> ModuleType:
    path = BENCH / f"drivers_{protocol}.py"
    spec = importlib.util.spec_from_file_location(f"gridctl_bench_drivers_{protocol}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(duration_s: float = 2.0, rounds: int = 3, protocols: tuple[str, ...] = PROTOCOLS) -> dict[str, Any]:
    """Each protocol's bench result, keyed by protocol, with how long each bench took."""
    results: dict[str, Any] = {}
    for protocol in protocols:
        started = time.monotonic()
        result = _bench(protocol).run(duration_s=duration_s, rounds=rounds)
        results[protocol] = {**result, "bench_wall_s": round(time.monotonic() - started, 1)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round and client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(PROTOCOLS), help="comma-separated protocols to run")
    args = parser.parse_args(argv)
    protocols = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown protocol(s): {', '.join(sorted(unknown))}")
    print(json.dumps(run(args.duration, args.rounds, protocols)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
