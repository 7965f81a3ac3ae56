"""Polls committed in groups: few transactions for many polls, nothing lost or stored twice, each
point's readings in the order they were polled, and a blocked database pushing back into the spool."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

from drivers.base import Quality, Reading
from gridctl.history import Historian, SQLiteHistorian
from gridctl.history.recorder import Recorder
from gridctl.history.spool import Spool

SITE = "test-site"
DEVICES = 200
POINTS = 6
POLLS = 4


def _poll(base: datetime, device: int, number: int, value_offset: float = 0.0) -> list[Reading]:
    return [Reading(f"dev{device:03d}/p{k}", base + timedelta(seconds=number), number + value_offset, Quality.GOOD)
            for k in range(POINTS)]


async def _poll_loop(recorder: Recorder, base: datetime, device: int) -> None:
    """One device's polling task: each poll waits for the previous one to be recorded."""
    for number in range(POLLS):
        await recorder.record(SITE, _poll(base, device, number))
        await asyncio.sleep(0)


async def test_concurrent_polls_share_transactions_and_each_reading_is_stored_once(historian: Historian, tmp_path):
    recorder = Recorder(historian, Spool(tmp_path / "spool.db"), flush_window_s=0.05)
    await recorder.start()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    try:
        await asyncio.gather(*(_poll_loop(recorder, base, d) for d in range(DEVICES)))
        # A retry of polls already stored (a write that timed out after committing) changes nothing.
        await asyncio.gather(*(recorder.record(SITE, _poll(base, d, 0, value_offset=100.0)) for d in range(20)))
    finally:
        await recorder.close()
    assert recorder.stats.written == (DEVICES * POLLS + 20) * POINTS
    assert recorder.stats.spooled == 0
    # Every device's polls went in far fewer transactions than there were polls.
    assert recorder.stats.commits <= DEVICES * POLLS / 10, recorder.stats
    assert recorder.stats.largest_group > POINTS * 10
    addresses = [f"dev{d:03d}/p{k}" for d in range(DEVICES) for k in range(POINTS)]
    frame = await historian.query(SITE, addresses, base, base + timedelta(seconds=POLLS), timedelta(seconds=1), "avg")
    # One reading per point and second, each the poll of that second, never the retried values.
    assert frame.shape == (POLLS, len(addresses))
    assert frame.notna().all().all()
    for number, row in enumerate(frame.itertuples(index=False)):
        assert set(row) == {float(number)}


async def test_a_blocked_database_sends_whole_groups_to_the_spool_and_they_come_back(tmp_path, site):
    path = tmp_path / "history.db"
    historian = SQLiteHistorian(path)
    await historian.open()
    await historian.upgrade()
    await historian.sync_site(site)
    recorder = Recorder(historian, Spool(tmp_path / "spool.db"), write_timeout_s=0.5, retry_initial_s=0.1,
                        flush_window_s=0.05)
    await recorder.start()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    # Another process holds the database's write lock for two seconds.
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(2.0, blocker.execute, ["COMMIT"])
    timer.start()
    try:
        await asyncio.gather(*(_poll_loop(recorder, base, d) for d in range(50)))
        # The group that timed out went to the spool whole, and the groups after it followed.
        assert recorder.stats.spooled >= 50 * POINTS
        assert recorder.stats.failures >= 1
        assert await recorder.drain(30)
    finally:
        timer.join()
        blocker.close()
        await recorder.close()
    addresses = [f"dev{d:03d}/p{k}" for d in range(50) for k in range(POINTS)]
    counts = await historian.query(SITE, addresses, base, base + timedelta(seconds=POLLS), timedelta(seconds=1),
                                   "count")
    assert counts.to_numpy().tolist() == [[1.0] * len(addresses)] * POLLS
    assert recorder.stats.written + recorder.stats.spooled == 50 * POLLS * POINTS
    await historian.close()


async def test_closing_stores_every_poll_handed_in_before(historian: Historian, tmp_path):
    recorder = Recorder(historian, Spool(tmp_path / "spool.db"), flush_window_s=0.2)
    await recorder.start()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    polls = [asyncio.create_task(recorder.record(SITE, _poll(base, d, 0))) for d in range(100)]
    await asyncio.sleep(0)
    await recorder.close()
    await asyncio.gather(*polls)
    assert recorder.stats.written == 100 * POINTS and recorder.pending == 0
    addresses = [f"dev{d:03d}/p{k}" for d in range(100) for k in range(POINTS)]
    counts = await historian.query(SITE, addresses, base, base + timedelta(seconds=1), timedelta(seconds=1), "count")
    assert counts.to_numpy().tolist() == [[1.0] * len(addresses)]
