"""Write journal benchmark: what journalling every write costs the dispatch, and how fast the shipper drains.

    .venv/bin/python bench/journal.py [--chargers 24] [--cycles 50]

Dispatches `--cycles` cycles of a new current limit to each of the parking silo's chargers (in-process
simulated devices, as in the arbiter's tests) through the arbiter, first without a journal (the baseline:
rules and device I/O only), then with the local journal (an fsync'd intent before each write, its outcome
after); then ships the journal into a fresh SQLite history database. The last line printed is one JSON
object: writes per second and per-write latency both ways, and the shipper's records per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from gridctl.config import load_site  # noqa: E402
from gridctl.dispatch.journal import WriteJournal  # noqa: E402
from gridctl.dispatch.shipper import JournalShipper  # noqa: E402
from gridctl.history import open_historian  # noqa: E402
from tests.dispatch.rig import Rig  # noqa: E402


async def _dispatch(rig: Rig, chargers: list[str], cycles: int) -> list[float]:
    latencies = []
    for cycle in range(cycles):
        rig.clock.advance(20)
        for charger in chargers:
            started = time.perf_counter()
            await rig.write(f"{charger}/current-limit", 6.0 + (cycle + len(charger)) % 20)
            latencies.append(time.perf_counter() - started)
    return latencies


def _figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"writes_per_s": round(len(latencies) / sum(latencies), 1),
            "p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3)}


async def _run(chargers_count: int, cycles: int) -> dict[str, object]:
    site = load_site(REPO / "sites" / "zac-union")
    chargers = [f"charger-{n:02d}" for n in range(1, chargers_count + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = _figures(await _dispatch(Rig(site, chargers), chargers, cycles))
        journal = WriteJournal(Path(tmp) / "writes.sqlite3")
        journalled = _figures(await _dispatch(Rig(site, chargers, journal=journal), chargers, cycles))
        target = str(Path(tmp) / "gridctl.sqlite3")
        historian = open_historian(target)
        await historian.open()
        await historian.upgrade()
        await historian.close()
        shipper = JournalShipper(journal, target)
        started = time.perf_counter()
        shipped = await shipper.drain()
        ship_s = time.perf_counter() - started
        await shipper.db.close()
        journal.close()
    return {"writes": chargers_count * cycles, "journal": journalled, "baseline": baseline,
            "journal_overhead_ms_p50": round(journalled["p50_ms"] - baseline["p50_ms"], 3),
            "shipped": shipped, "ship_records_per_s": round(shipped / ship_s, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=24)
    parser.add_argument("--cycles", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args.chargers, args.cycles))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
