"""Three `gridctl run --cluster` instances on loopback share the three demonstrators on TimescaleDB,
against their simulated devices (sim/failover.py): an owner killed with SIGKILL, another cut from the
database, both back again, requests made on instances that do not own the site, then every instance
stopped in turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.failover import Cluster, Timing, drill

REPO = Path(__file__).resolve().parents[2]
SITES = [REPO / "sites" / name for name in ("zac-haute-deule", "zac-saint-sauveur", "zac-union")]

pytestmark = [pytest.mark.timescale, pytest.mark.slow]


async def test_three_instances_share_the_demonstrators(timescale_db: str, tmp_path: Path) -> None:
    timing = Timing()
    cluster = Cluster(SITES, timescale_db, tmp_path, timing=timing)
    await cluster.start()
    try:
        figures = await drill(cluster)
    finally:
        await cluster.close()
    print(figures)
    # Another instance takes a dead or cut-off owner's site within two lease periods, and writes.
    for case in ("kill9", "partition"):
        assert figures[case]["takeover_s"] <= 2 * timing.lease_s
        assert figures[case]["to"] != figures[case]["from"]
    # The cut-off owner stopped commanding and said why.
    assert figures["lease_lost_audited"] >= 1
    # Never two instances writing to one device: every write is under a lease epoch, and the epochs' spans
    # on each device do not overlap.
    assert figures["double_writer_intervals"] == 0, figures["overlaps"]
    assert figures["writes_without_epoch"] == 0 and figures["writes_without_instance"] == 0
    assert figures["epochs_with_two_writers"] == 0
    assert figures["writes_sent"] > 0
    # Every write a device received is audited (a write killed between sending and its outcome is audited
    # as interrupted).
    assert figures["writes_audited"] <= figures["writes_sent"] <= figures["writes_audited"] + figures[
        "writes_interrupted"], figures["writes_unmatched"]
    # Every reading taken in is stored once, the killed instance's spool replayed at its restart.
    assert figures["partition"]["spooled_at_kill"] > 0
    assert figures["readings_lost"] == 0
    assert figures["readings_duplicated"] == 0
    # Any instance answers for any site, and a request made anywhere reaches the owner within 5 s.
    assert all(count > 0 for count in figures["live_points"].values()), figures["live_points"]
    assert figures["hands_off"]["status"] == 200 and figures["hands_off"]["pending"] is False
    assert figures["hands_off"]["owner_holds_s"] < 5
    assert figures["hands_off"]["hands_on_status"] == 200
    assert figures["demand_response"]["status"] == 201
    assert figures["demand_response"]["owner_follows_s"] < 5
    assert figures["exit_codes"] == [0, 0, 0]
