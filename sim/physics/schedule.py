"""Daily time windows in a site's local time (occupancy, lighting periods, appliance windows)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Window(Protocol):
    start: time
    end: time
    days: list[str]


def in_window(window: Window, ts: datetime, tz: ZoneInfo) -> bool:
    """True when `ts` falls in the window; a window ending before it starts wraps past midnight and
    belongs to the day it started on."""
    local = ts.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if window.start <= window.end:
        return DAY_NAMES[local.weekday()] in window.days and window.start <= clock < window.end
    if clock >= window.start:
        return DAY_NAMES[local.weekday()] in window.days
    if clock < window.end:
        return DAY_NAMES[(local - timedelta(days=1)).weekday()] in window.days
    return False


def in_any(windows: Iterable[Window], ts: datetime, tz: ZoneInfo) -> bool:
    return any(in_window(w, ts, tz) for w in windows)
