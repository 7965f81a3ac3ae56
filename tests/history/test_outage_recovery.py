"""The database going away behind a TCP fault proxy (silent network, reset connections) and the server
stopping: polls never wait on it, the outage is told at once, draining starts within seconds of the
database answering again, faster than readings arrive, and every reading is stored once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from drivers.base import Quality, Reading
from gridctl.history.recorder import HistoryStatus, Recorder
from gridctl.history.spool import Spool
from gridctl.history.timescale import TimescaleHistorian
from sim.faults import FaultProxy

POINTS = [f"drill/p{i:02d}" for i in range(20)]
PERIOD_S = 0.05
OUTAGE_S = 12.0


def _proxied(dsn: str, port: int) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(port))
    return psycopg.conninfo.make_conninfo(**params)


class Ingest:
    """Readings of 20 points every 50 ms, recording how long each `record` call took."""

    def __init__(self, recorder: Recorder, base: datetime) -> None:
        self.recorder, self.base = recorder, base
        self.batches = 0
        self.slow_calls: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            ts = self.base + self.batches * timedelta(seconds=PERIOD_S)
            started = time.monotonic()
            await self.recorder.record("test-site", [Reading(p, ts, float(self.batches), Quality.GOOD) for p in POINTS])
            took = time.monotonic() - started
            if took > 1.0:
                self.slow_calls.append(took)
            self.batches += 1
            await asyncio.sleep(max(0.0, PERIOD_S - took))


async def _until(condition, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.timescale
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["blackhole", "reset", "server_stop"])
async def test_outage_told_at_once_and_drained_quickly(fault, timescale, timescale_db, site, tmp_path):
    proxy = FaultProxy("127.0.0.1", timescale.port).start()
    historian = TimescaleHistorian(_proxied(timescale_db, proxy.port), timeout_s=2, write_timeout_s=4)
    await historian.open()
    await historian.upgrade()
    await historian.sync_site(site)
    statuses: list[tuple[float, HistoryStatus]] = []
    recorder = Recorder(historian, Spool(tmp_path / "spool.db"), write_timeout_s=5,
                        on_status=lambda s: statuses.append((time.monotonic(), s)))
    await recorder.start()
    ingest = Ingest(recorder, datetime.now(UTC).replace(microsecond=0))
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.sleep(2)
        assert recorder.stats.written > 0 and recorder.status.available
        failed_at = time.monotonic()
        if fault == "server_stop":
            await asyncio.to_thread(timescale.stop, "immediate")
        else:
            getattr(proxy, fault)()
        told = await _until(lambda: not recorder.status.available, 30)
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - failed_at)))
        spooled_at_heal = len(recorder.spool)
        batches_before = ingest.batches
        if fault == "server_stop":
            await asyncio.to_thread(timescale.start)
        else:
            proxy.heal()
        healed_at = time.monotonic()
        flushed = recorder.stats.flushed
        drain_started = await _until(lambda: recorder.stats.flushed > flushed, 30)
        await _until(lambda: len(recorder.spool) == 0, 120)
        drained_at = time.monotonic()
        ingest_rate = (ingest.batches - batches_before) * len(POINTS) / (drained_at - healed_at)
        drain_rate = (spooled_at_heal + (ingest.batches - batches_before) * len(POINTS)) / (drained_at - healed_at)
    finally:
        ingest.stop.set()
        await task
    assert await recorder.drain(60)
    await recorder.close()
    await historian.close()
    proxy.stop()
    print(f"{fault}: told after {told - failed_at:.1f} s, drain started {drain_started - healed_at:.1f} s after the "
          f"database answered, {drain_rate:.0f} readings/s drained against {ingest_rate:.0f}/s arriving, "
          f"{spooled_at_heal} spooled at heal")
    assert told - failed_at < 30
    assert drain_started - healed_at < 5
    assert drain_rate >= ingest_rate / 2
    assert [s.available for _t, s in statuses] == [False, True]
    # One poll may wait for the write in flight when the database went silent; no other.
    assert len(ingest.slow_calls) <= 1 and all(t < 6 for t in ingest.slow_calls)
    with psycopg.connect(timescale_db) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (r.point_id, r.ts)) FROM readings AS r "
            "JOIN points AS p ON p.id = r.point_id WHERE p.address LIKE 'drill/%'").fetchone()
    assert total == distinct == ingest.batches * len(POINTS)
