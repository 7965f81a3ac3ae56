"""The spool on its own: order, durability across reopening, sites, the 90 % alarm, the bound, and a
spool left by a version that kept no site."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from drivers.base import Quality, Reading
from gridctl.history.spool import Spool, SpoolAlarm, SpoolFull

T0 = datetime(2026, 5, 4, 12, tzinfo=UTC)


def batch(start: int, n: int) -> list[Reading]:
    return [Reading(f"dev/p{i % 3}", T0 + timedelta(seconds=start + i), float(start + i), Quality.GOOD)
            for i in range(n)]


def test_fifo_grouped_by_receive_time_and_durable(tmp_path):
    spool = Spool(tmp_path / "spool.db", capacity=1000)
    spool.append("north", batch(0, 4), received_at=T0)
    spool.append("north", batch(4, 3), received_at=T0 + timedelta(seconds=10))
    spool.append("south", [Reading("dev/flag", T0, True, Quality.STALE, "no answer")],
                 received_at=T0 + timedelta(seconds=10))
    spool.close()

    reopened = Spool(tmp_path / "spool.db", capacity=1000)
    assert len(reopened) == 8
    assert (reopened.count("north"), reopened.count("south"), reopened.count(None)) == (7, 1, 0)
    batches = reopened.peek(100)
    # Same receive time, another site: a batch of its own.
    assert [(b.site_id, b.received_at) for b in batches] == [
        ("north", T0), ("north", T0 + timedelta(seconds=10)), ("south", T0 + timedelta(seconds=10))]
    assert [r.value for r in batches[0].readings + batches[1].readings] == [float(i) for i in range(7)]
    assert batches[0].readings == batch(0, 4)
    assert batches[2].readings == [Reading("dev/flag", T0, 1, Quality.STALE, "no answer")]
    # Acknowledging the first batch leaves the rest in order.
    reopened.ack(batches[0].last_seq)
    assert len(reopened) == 4 and reopened.count("north") == 3
    assert reopened.peek(2)[0].readings == batch(4, 2)
    reopened.close()


def test_alarm_at_ninety_percent_and_bound(tmp_path):
    alarms: list[SpoolAlarm] = []
    spool = Spool(tmp_path / "spool.db", capacity=100, on_alarm=alarms.append)
    spool.append("north", batch(0, 89), T0)
    assert alarms == []
    spool.append("north", batch(89, 1), T0)
    assert [(a.active, a.count, a.fill_ratio) for a in alarms] == [(True, 90, 0.9)]
    spool.append("north", batch(90, 10), T0)
    assert len(alarms) == 1  # raised once, not on every append
    with pytest.raises(SpoolFull):
        spool.append("north", batch(100, 1), T0)
    assert len(spool) == 100 and spool.refused == 1
    assert alarms[-1].refused == 1
    spool.ack(spool.peek(50)[-1].last_seq)
    assert alarms[-1].active is False and alarms[-1].count == 50
    spool.close()
    # Reopening a spool above the alarm level raises the alarm again.
    spool = Spool(tmp_path / "spool.db", capacity=55, on_alarm=alarms.append)
    assert alarms[-1].active is True and spool.alarm_active
    spool.close()


def test_spool_of_an_older_version_is_attributed_or_quarantined_never_dropped(tmp_path):
    """A spool written without sites: readings whose point belongs to one site the service runs go to
    that site; points two sites share, or no site has, keep no site (the historian quarantines them)."""
    path = tmp_path / "readings.spool"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at INTEGER NOT NULL, "
                "address TEXT NOT NULL, ts INTEGER NOT NULL, value, quality TEXT NOT NULL, error TEXT)")
    rows = [("silo-bms/co", 1.0), ("grid-meter/power", 2.0), ("mystery/x", 3.0), ("silo-bms/co", 4.0)]
    old.executemany("INSERT INTO spool (received_at, address, ts, value, quality) VALUES (0, ?, 0, ?, 'good')", rows)
    old.close()

    spool = Spool(path, sites={"zac-union": ["silo-bms/co", "grid-meter/power"],
                               "zac-haute-deule": ["grid-meter/power"]})
    assert len(spool) == 4
    assert (spool.count("zac-union"), spool.count(None)) == (2, 2)
    batches = spool.peek(10)
    assert [(b.site_id, [r.value for r in b.readings]) for b in batches] == [
        ("zac-union", [1.0]), (None, [2.0, 3.0]), ("zac-union", [4.0])]
    spool.append("zac-union", batch(0, 1), T0)
    spool.close()
    # Reopened, it is a spool of the current format: nothing is attributed again.
    reopened = Spool(path)
    assert (reopened.count("zac-union"), reopened.count(None)) == (3, 2)
    reopened.close()
