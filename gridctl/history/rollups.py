"""Which rollup buckets to recompute after writes, shared by both back ends.

Writes record, per point, the span of timestamps they touched. A measurement bucket [h, h+1h) depends
on the readings inside it. An energy counter's consumption between two readings is attributed to the
bucket holding the later reading's instant minus one microsecond: the delta of (t_prev, t] lands in the
bucket where the interval ends, so readings on the hour count into the hour they close, and bucket
sums equal counter(end) - counter(start). Across a gap the whole delta lands in the bucket where the
counter is read again: consumption is never spread over hours without data. A late reading therefore
changes the buckets its span covers and, for counters, the bucket of the next reading after it.

Daily rollups are recomputed from the hourly ones for every local day a recomputed hour falls in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from gridctl.history.timebuckets import DAY_US, HOUR_US, from_us, local_day_of, local_midnight, to_us


def counter_rise(before: float, now: float, counter_max: float | None) -> float:
    """A counter's rise between two readings, as the rollups' SQL counts it (COUNTER_DELTA)."""
    if now >= before:
        return now - before
    if counter_max is not None and before > counter_max / 2 and now < counter_max / 2:
        return counter_max - before + now
    return now if now < before / 2 else 0.0


# Recompute at most a week of hours per statement: bounded work per transaction.
MAX_JOB_SPAN_US = 7 * DAY_US


@dataclass(frozen=True, slots=True)
class HourJob:
    """Recompute hourly buckets [start_us, end_us) of these points."""

    start_us: int
    end_us: int
    point_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DayJob:
    """Recompute the daily buckets of these points for the local days starting at `day_starts_us`."""

    timezone: str
    day_starts_us: tuple[int, ...]
    point_ids: tuple[int, ...]


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def dirty_hour_ranges(spans: Iterable[tuple[int, int, int]]) -> dict[int, list[tuple[int, int]]]:
    """From written spans (point_id, first_us, last_us) to merged hour-aligned ranges [lo, hi) per point.

    The hour before the first reading counts too: a counter reading exactly on the hour closes it.
    """
    ranges: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for point_id, first_us, last_us in spans:
        lo = (first_us - 1) // HOUR_US * HOUR_US
        hi = last_us // HOUR_US * HOUR_US + HOUR_US
        ranges[point_id].append((lo, hi))
    return {point_id: _merge(r) for point_id, r in ranges.items()}


def extend_with_next_readings(
    ranges: dict[int, list[tuple[int, int]]], next_reading_us: Mapping[tuple[int, int], int]
) -> dict[int, list[tuple[int, int]]]:
    """Add, for counters, the hour of the first reading after each range (keyed (point_id, range end))."""
    out: dict[int, list[tuple[int, int]]] = {}
    for point_id, point_ranges in ranges.items():
        extra = []
        for _lo, hi in point_ranges:
            ts = next_reading_us.get((point_id, hi))
            if ts is not None:
                hour = (ts - 1) // HOUR_US * HOUR_US
                extra.append((hour, hour + HOUR_US))
        out[point_id] = _merge([*point_ranges, *extra])
    return out


def hour_jobs(ranges: Mapping[int, list[tuple[int, int]]]) -> list[HourJob]:
    """Cut ranges at fixed week boundaries so that points with the same dirty hours share a statement."""
    by_span: dict[tuple[int, int], list[int]] = defaultdict(list)
    for point_id, point_ranges in ranges.items():
        for lo, hi in point_ranges:
            cut = lo
            while cut < hi:
                boundary = min(hi, (cut // MAX_JOB_SPAN_US + 1) * MAX_JOB_SPAN_US)
                by_span[(cut, boundary)].append(point_id)
                cut = boundary
    return [HourJob(lo, hi, tuple(sorted(points))) for (lo, hi), points in sorted(by_span.items())]


def day_jobs(ranges: Mapping[int, list[tuple[int, int]]], timezone_of: Mapping[int, str]) -> list[DayJob]:
    """The local days (per point's site timezone) that the recomputed hours fall in."""
    by_days: dict[tuple[str, tuple[int, ...]], list[int]] = defaultdict(list)
    cache: dict[tuple[str, int], date] = {}
    for point_id, point_ranges in ranges.items():
        tz_name = timezone_of.get(point_id, "UTC")
        tz = ZoneInfo(tz_name)
        days: set[date] = set()
        for lo, hi in point_ranges:
            for edge in (lo, hi - HOUR_US):
                key = (tz_name, edge)
                if key not in cache:
                    cache[key] = local_day_of(from_us(edge), tz)
            first, last = cache[(tz_name, lo)], cache[(tz_name, hi - HOUR_US)]
            days.update(first + timedelta(days=i) for i in range((last - first).days + 1))
        starts = tuple(sorted(to_us(local_midnight(d, tz)) for d in days))
        by_days[(tz_name, starts)].append(point_id)
    return [DayJob(tz, starts, tuple(sorted(points))) for (tz, starts), points in by_days.items()]
