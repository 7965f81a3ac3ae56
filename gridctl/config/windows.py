"""A site file's daily windows (given in local time) evaluated on UTC instants: occupancy, off-peak hours, lighting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from gridctl.config.models import LightingPeriod, TimeWindow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def in_window(moment: datetime, window: TimeWindow, tz: ZoneInfo) -> bool:
    """Whether a UTC instant falls in a daily window given in the site's local time.

    A window that wraps past midnight belongs to the day it starts on: 22:00–06:00 on a Friday
    covers Friday 22:00 to Saturday 06:00.
    """
    local = moment.astimezone(tz)
    clock = local.time()
    if window.start <= window.end:
        return DAYS[local.weekday()] in window.days and window.start <= clock < window.end
    if clock >= window.start:
        return DAYS[local.weekday()] in window.days
    if clock < window.end:
        return DAYS[(local.weekday() - 1) % 7] in window.days
    return False


def in_any(moment: datetime, windows: Sequence[TimeWindow], tz: ZoneInfo) -> bool:
    return any(in_window(moment, w, tz) for w in windows)


def lighting_period(moment: datetime, periods: Sequence[LightingPeriod], tz: ZoneInfo) -> LightingPeriod | None:
    for period in periods:
        if in_window(moment, period.window, tz):
            return period
    return None


def next_window_start(after: datetime, window: TimeWindow, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The next (start, end) occurrence in UTC of a daily window that has not ended at `after`."""
    local = after.astimezone(tz)
    for offset in range(-1, 8):
        day = (local + timedelta(days=offset)).date()
        if DAYS[day.weekday()] not in window.days:
            continue
        start = datetime.combine(day, window.start, tz)
        end_day = day + timedelta(days=1) if window.end <= window.start else day
        end = datetime.combine(end_day, window.end if window.end != time(0) else time(0), tz)
        if end > local:
            return start.astimezone(after.tzinfo), end.astimezone(after.tzinfo)
    raise ValueError("window has no day")
