"""SimDevice bookkeeping that a long simulation relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sim.bacnet_server import ahu_device
from sim.core import WRITE_LOG_SIZE, SimClock, SimDevice


def test_write_log_keeps_the_latest_writes_only() -> None:
    clock = SimClock(datetime(2026, 7, 6, tzinfo=UTC))
    device = SimDevice(ahu_device(), clock)
    total = WRITE_LOG_SIZE + 40
    for i in range(total):
        device.write("fan_speed", float(i % 100), 10)
        clock.advance(timedelta(minutes=15))
    assert len(device.writes) == WRITE_LOG_SIZE
    first_kept = total - WRITE_LOG_SIZE
    assert device.writes[0][2] == float(first_kept % 100)
    assert device.writes[-1] == (clock.now() - timedelta(minutes=15), "fan_speed", float((total - 1) % 100), 10)
    # The point itself is unaffected by the log's bound.
    assert device.get("fan_speed") == float((total - 1) % 100)
    assert device.priority_array("fan_speed")[9] == float((total - 1) % 100)
