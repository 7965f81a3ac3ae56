"""Failover of site leases: three `gridctl run --cluster` processes on one TimescaleDB share the three
demonstrators (simulated devices on loopback). One owner is killed with SIGKILL while, at the same
moment, another is cut from the database (its link goes silent); both come back later, a hands off and a
demand-response event are asked of an instance that does not own the site, then every instance stops.

Figures: `takeover_s` (the fault to another instance holding the site's lease; the goal is two lease
periods), `double_writer_intervals` (per device, spans of writes of different lease epochs that overlap:
must be 0), `readings_lost` and `readings_duplicated` (every reading an instance took in, written or
spooled, against the rows stored), the writes devices received against those audited, and as baseline
`cold_start_s`: every site owned and written from a cold start of all instances.

    .venv/bin/python bench/failover.py [--lease-s 8]

Prints progress on stderr and one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from pgcluster import PgCluster  # noqa: E402

from sim.failover import Cluster, Timing, drill  # noqa: E402

SITES = [REPO / "sites" / name for name in ("zac-haute-deule", "zac-saint-sauveur", "zac-union")]


def log(message: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timing(lease_s: float) -> Timing:
    """Renewal at an eighth of the lease and writes abandoned past 30 % of it: the lease outlasts a renewal
    period, the longest write and a margin, with a renewal to spare."""
    return Timing(lease_s=lease_s, renew_s=lease_s / 8, write_budget_s=lease_s * 0.3, live_s=1.0)


async def run(dsn: str, work: Path, lease_s: float) -> dict[str, object]:
    cluster = Cluster(SITES, dsn, work, timing=timing(lease_s))
    await cluster.start()
    try:
        return await drill(cluster, log)
    finally:
        await cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lease-s", type=float, default=8.0, help="site lease period (default 8 s)")
    args = parser.parse_args()
    started = time.monotonic()
    log("starting the TimescaleDB cluster")
    cluster = PgCluster.create()
    try:
        dsn = cluster.timescale_database("bench_failover")
        with tempfile.TemporaryDirectory(prefix="gridctl-failover-") as work:
            figures = asyncio.run(run(dsn, Path(work), args.lease_s))
    finally:
        cluster.remove()
    goals = {"takeover_s": 2 * args.lease_s, "double_writer_intervals": 0, "readings_lost": 0,
             "readings_duplicated": 0}
    met = (figures["takeover_s"] <= goals["takeover_s"] and figures["double_writer_intervals"] == 0  # type: ignore[operator]
           and figures["readings_lost"] == 0 and figures["readings_duplicated"] == 0)
    print(json.dumps({"bench": "failover", "at": datetime.now(UTC).isoformat(timespec="seconds"),
                      "goals": goals, "goals_met": met, "wall_s": round(time.monotonic() - started, 1),
                      **figures}, default=str))
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
