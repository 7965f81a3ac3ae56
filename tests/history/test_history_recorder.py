"""No reading lost: database outages in the middle of ingest, and a writer killed with a full spool."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from spool_writer import POINTS as CRASH_POINTS
from spool_writer import batch as crash_batch

from drivers.base import Quality, Reading
from gridctl.history import SQLiteHistorian
from gridctl.history.recorder import Recorder
from gridctl.history.spool import Spool
from gridctl.history.timescale import TimescaleHistorian

REPO = Path(__file__).resolve().parents[2]
# Two sites with the same addresses, told apart by an offset in their values.
SITES = {"test-site": 0.0, "twin-site": 1000.0}


def _now_second() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_sqlite_too_slow_goes_to_spool_then_flushes(tmp_path, site):
    path = tmp_path / "history.db"
    historian = SQLiteHistorian(path)
    await historian.open()
    await historian.upgrade()
    await historian.sync_site(site)
    recorder = Recorder(historian, Spool(tmp_path / "spool.db"), write_timeout_s=0.5, retry_initial_s=0.1)
    await recorder.start()
    base = _now_second()
    points = ["meters/pv_power", "meters/temperature"]

    def readings(i: int) -> list[Reading]:
        return [Reading(p, base + timedelta(seconds=i), float(i), Quality.GOOD) for p in points]

    await recorder.record("test-site", readings(0))
    # Another process holds the database's write lock for two seconds: writes time out meanwhile.
    import sqlite3

    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(2.0, blocker.execute, ["COMMIT"])
    timer.start()
    for i in range(1, 6):
        await recorder.record("test-site", readings(i))
    # The poll that met the locked database went to the spool, and so did every poll after it until the
    # spool was replayed; each reading went one way or the other, once.
    assert recorder.stats.spooled >= 2
    assert recorder.stats.written + recorder.stats.spooled == 12
    assert await recorder.drain(30)
    timer.join()
    blocker.close()
    counts = await historian.query("test-site", points, base, base + timedelta(seconds=6), timedelta(seconds=1), "count")
    assert counts.to_numpy().tolist() == [[1.0, 1.0]] * 6
    await recorder.close()
    await historian.close()


@pytest.mark.timescale
@pytest.mark.slow
async def test_database_outage_mid_ingest_loses_nothing(timescale, timescale_db, site, tmp_path):
    """Two sites with the same point addresses record side by side; each keeps its own series."""
    historian = TimescaleHistorian(timescale_db, timeout_s=2)
    await historian.open()
    await historian.upgrade()
    await historian.sync_site(site)
    recorder = Recorder(historian, Spool(tmp_path / "spool.db"), write_timeout_s=5, retry_max_s=1)
    await recorder.start()
    points = [f"outage/p{i:02d}" for i in range(20)]
    base = _now_second()
    step = timedelta(milliseconds=50)
    stop = asyncio.Event()

    async def ingest() -> int:
        number = 0
        while not stop.is_set():
            for site_id, offset in SITES.items():
                await recorder.record(site_id, [Reading(p, base + number * step, float(number) + offset, Quality.GOOD)
                                                for p in points])
            number += 1
            await asyncio.sleep(0.05)
        return number

    task = asyncio.create_task(ingest())
    try:
        await asyncio.sleep(3)
        written_before = recorder.stats.written
        assert written_before > 0
        # A crash of the server in the middle of the ingest, down for 12 s (more than twice the write
        # timeout, so writes under way time out and later ones go straight to the spool).
        await asyncio.to_thread(timescale.stop, "immediate")
        spooled_at_stop = recorder.stats.spooled
        await asyncio.sleep(12)
        assert not task.done()
        assert recorder.stats.spooled - spooled_at_stop >= 50 * len(points) * len(SITES)
        await asyncio.to_thread(timescale.start)
        await asyncio.sleep(3)
    finally:
        stop.set()
        batches = await task
    assert await recorder.drain(90), f"spool still holds {len(recorder.spool)} readings"
    assert recorder.stats.flushed > 0
    await recorder.close()
    await historian.close()

    with psycopg.connect(timescale_db) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (r.point_id, r.ts)) FROM readings AS r "
            "JOIN points AS p ON p.id = r.point_id WHERE p.address LIKE 'outage/%'"
        ).fetchone()
        per_point = conn.execute(
            "SELECT p.site_id, p.address, count(*), sum(r.value), min(r.ts), max(r.ts) FROM readings AS r "
            "JOIN points AS p ON p.id = r.point_id WHERE p.address LIKE 'outage/%' GROUP BY p.site_id, p.address"
        ).fetchall()
    assert total == distinct == batches * len(points) * len(SITES)
    assert len(per_point) == len(points) * len(SITES)
    for site_id, _address, count, value_sum, first, last in per_point:
        assert count == batches
        assert value_sum == batches * (batches - 1) / 2 + batches * SITES[site_id]
        assert (first, last) == (base, base + (batches - 1) * step)


@pytest.mark.timescale
@pytest.mark.slow
async def test_writer_killed_with_full_spool_replays_exactly_once(timescale, timescale_db, site, tmp_path):
    historian = TimescaleHistorian(timescale_db, timeout_s=2)
    await historian.open()
    await historian.upgrade()
    await historian.sync_site(site)
    await historian.close()
    spool_path = tmp_path / "spool.db"
    base = _now_second()

    acknowledged = await asyncio.to_thread(_write_until_killed, timescale, timescale_db, spool_path, base)

    # A new process (here: this one) starts with the database back and replays the spool.
    spool = Spool(spool_path)
    assert len(spool) >= (acknowledged + 1) * len(CRASH_POINTS)
    historian = TimescaleHistorian(timescale_db)
    await historian.open()
    recorder = Recorder(historian, spool)
    await recorder.start()
    assert await recorder.drain(60)
    await recorder.close()
    await historian.close()
    assert len(spool) == 0
    spool.close()

    with psycopg.connect(timescale_db) as conn:
        rows = conn.execute(
            "SELECT p.address, r.ts, r.value FROM readings AS r JOIN points AS p ON p.id = r.point_id "
            "WHERE p.address LIKE 'crash/%' ORDER BY r.ts, p.address"
        ).fetchall()
    stored = {(address, ts): value for address, ts, value in rows}
    assert len(stored) == len(rows)
    # Every acknowledged batch is there once; the batch being spooled at the kill is there whole or not at all.
    batches = len(rows) // len(CRASH_POINTS)
    assert len(rows) % len(CRASH_POINTS) == 0
    assert batches in (acknowledged + 1, acknowledged + 2)
    expected = {(r.address, r.ts): r.value for n in range(batches) for r in crash_batch(base, n)}
    assert stored == expected


def _write_until_killed(timescale, dsn: str, spool_path: Path, base: datetime) -> int:
    """With the database down, run the writer until it has spooled 300 batches, SIGKILL it and return
    the last batch number it acknowledged."""
    timescale.stop()
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(Path(__file__).parent)]))
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "spool_writer.py"), dsn, str(spool_path), base.isoformat()],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        acknowledged = -1
        try:
            assert child.stdout is not None
            for line in child.stdout:
                acknowledged = int(line)
                if acknowledged >= 300:
                    break
        finally:
            child.send_signal(signal.SIGKILL)
            remaining, _ = child.communicate(timeout=30)
        acknowledged = max([acknowledged, *(int(n) for n in remaining.split())])
        assert child.returncode == -signal.SIGKILL
        assert acknowledged >= 300
        return acknowledged
    finally:
        timescale.start()
