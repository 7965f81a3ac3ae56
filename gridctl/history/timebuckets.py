"""Bucket boundaries in UTC and in a site's local time (days of 23 or 25 hours at DST changes)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
HOUR_US = 3_600_000_000
DAY = timedelta(days=1)
DAY_US = 86_400_000_000
# Day keys count local days from this date: key = local date - LOCAL_ORIGIN.
LOCAL_ORIGIN = date(1970, 1, 1)


def to_us(ts: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    return (ts - EPOCH) // MICROSECOND


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def floor_hour(ts: datetime) -> datetime:
    return from_us(to_us(ts) // HOUR_US * HOUR_US)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant of local midnight starting `day` (a gap at midnight moves to the next valid time)."""
    naive = datetime(day.year, day.month, day.day)
    local = naive.replace(tzinfo=tz)
    # Round-trip through UTC normalises a non-existent local time (a DST gap) forwards.
    return local.astimezone(UTC).astimezone(tz).astimezone(UTC)


def local_day_of(ts: datetime, tz: ZoneInfo) -> date:
    return ts.astimezone(tz).date()


def local_days(start: date, end: date) -> list[date]:
    """Dates from start up to end (exclusive)."""
    return [start + timedelta(days=i) for i in range((end - start).days)]


def local_month_starts(start: date, end: date) -> list[date]:
    """First days of the months that overlap [start, end)."""
    months = []
    current = date(start.year, start.month, 1)
    while current < end:
        months.append(current)
        current = date(current.year + (current.month == 12), current.month % 12 + 1, 1)
    return months


def bucket_starts_us(start: datetime, end: datetime, bucket: timedelta, tz: ZoneInfo | None) -> np.ndarray:
    """Starts (µs, UTC) of the buckets covering [start, end): multiples of `bucket` from the epoch, or
    for whole-day buckets with a time zone, local midnights every `bucket.days` days from 1970-01-01."""
    if tz is not None and bucket % DAY == timedelta(0):
        days = bucket.days
        origin = LOCAL_ORIGIN
        first_day = local_day_of(start, tz)
        first_day -= timedelta(days=(first_day - origin).days % days)
        starts = []
        day = first_day
        while True:
            boundary = local_midnight(day, tz)
            if boundary >= end:
                break
            starts.append(to_us(boundary))
            day += timedelta(days=days)
        return np.array(starts, dtype=np.int64)
    step = bucket // MICROSECOND
    first = to_us(start) // step * step
    return np.arange(first, max(first, to_us(end)), step, dtype=np.int64)


def day_key_start(key: int, days: int, tz: ZoneInfo) -> datetime:
    """UTC start of the local bucket numbered `key` (buckets of `days` local days from LOCAL_ORIGIN)."""
    return local_midnight(LOCAL_ORIGIN + timedelta(days=key * days), tz)


def offset_transitions(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The UTC offsets (microseconds) in force over [start, end): [(from_instant, offset_us), ...]; the
    first entry starts at `start`. Offsets change on whole minutes, so scanning by hour then by minute
    finds every change."""
    def offset_us(ts: datetime) -> int:
        return ts.astimezone(tz).utcoffset() // MICROSECOND  # type: ignore[operator]

    start = from_us(to_us(start) // 60_000_000 * 60_000_000)
    result = [(start, offset_us(start))]
    hour = start
    while hour < end:
        following = hour + HOUR
        if offset_us(following) != result[-1][1]:
            minute = hour
            while offset_us(minute) == result[-1][1]:
                minute += timedelta(minutes=1)
            result.append((minute, offset_us(minute)))
        hour = following
    return result
