"""gridctl's side of a device watchdog: a heartbeat point written every period, so that the device's own
logic can let go of gridctl's commands when the heartbeats stop (BACnet priority writes and OPC-UA
have no lease of their own).

The heartbeat is a counter that changes every beat, wrapping within the point's limits, so a device
that watches for a change works as well as one that watches for a write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers.base import Value
from gridctl.config.models import Point, Watchdog

COUNTER_MAX = 65_535


@dataclass
class Heartbeat:
    device_id: str
    watchdog: Watchdog
    low: int
    high: int
    counter: int | None = None
    last_ok: datetime | None = None
    last_attempt: datetime | None = None

    @classmethod
    def of(cls, device_id: str, watchdog: Watchdog, point: Point) -> Heartbeat:
        low = math.ceil(point.min) if point.min is not None else 0
        high = math.floor(point.max) if point.max is not None else COUNTER_MAX
        return cls(device_id, watchdog, low, max(high, low + 1))

    @property
    def address(self) -> str:
        return f"{self.device_id}/{self.watchdog.point}"

    def due(self, now: datetime) -> bool:
        return self.last_attempt is None or now >= self.last_attempt + timedelta(seconds=self.watchdog.period_s)

    def lapsed(self, now: datetime) -> bool:
        """No heartbeat reached the device within its timeout: it may have let go of gridctl's commands."""
        return self.last_ok is None or now > self.last_ok + timedelta(seconds=self.watchdog.timeout_s)

    def next_value(self, device_value: Value | None) -> int:
        base = self.counter
        if base is None and isinstance(device_value, int | float) and not isinstance(device_value, bool):
            base = int(device_value) if math.isfinite(device_value) else None
        if base is None:
            return self.low
        following = base + 1
        return self.low if following > self.high or following < self.low else following

    def reason(self) -> str:
        return (f"watchdog heartbeat every {self.watchdog.period_s:g} s (the device lets go of gridctl's "
                f"commands after {self.watchdog.timeout_s:g} s without one)")
