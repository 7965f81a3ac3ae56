"""The spool on its own: order, durability across reopening, the 90 % alarm, the bound."""

from __future__ import annotations

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
    spool.append(batch(0, 4), received_at=T0)
    spool.append(batch(4, 3), received_at=T0 + timedelta(seconds=10))
    spool.append([Reading("dev/flag", T0, True, Quality.STALE, "no answer")], received_at=T0 + timedelta(seconds=20))
    spool.close()

    reopened = Spool(tmp_path / "spool.db", capacity=1000)
    assert len(reopened) == 8
    batches = reopened.peek(100)
    assert [b.received_at for b in batches] == [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)]
    assert [r.value for r in batches[0].readings + batches[1].readings] == [float(i) for i in range(7)]
    assert batches[0].readings == batch(0, 4)
    assert batches[2].readings == [Reading("dev/flag", T0, 1, Quality.STALE, "no answer")]
    # Acknowledging the first batch leaves the rest in order.
    reopened.ack(batches[0].last_seq)
    assert len(reopened) == 4
    assert reopened.peek(2)[0].readings == batch(4, 2)
    reopened.close()


def test_alarm_at_ninety_percent_and_bound(tmp_path):
    alarms: list[SpoolAlarm] = []
    spool = Spool(tmp_path / "spool.db", capacity=100, on_alarm=alarms.append)
    spool.append(batch(0, 89), T0)
    assert alarms == []
    spool.append(batch(89, 1), T0)
    assert [(a.active, a.count, a.fill_ratio) for a in alarms] == [(True, 90, 0.9)]
    spool.append(batch(90, 10), T0)
    assert len(alarms) == 1  # raised once, not on every append
    with pytest.raises(SpoolFull):
        spool.append(batch(100, 1), T0)
    assert len(spool) == 100 and spool.refused == 1
    assert alarms[-1].refused == 1
    spool.ack(spool.peek(50)[-1].last_seq)
    assert alarms[-1].active is False and alarms[-1].count == 50
    spool.close()
    # Reopening a spool above the alarm level raises the alarm again.
    spool = Spool(tmp_path / "spool.db", capacity=55, on_alarm=alarms.append)
    assert alarms[-1].active is True and spool.alarm_active
    spool.close()
