"""Query results as pandas frames: a full bucket index, NaN where there is no data.

Bucket starts travel as integer microseconds since the epoch (UTC) between the databases and here, so
that thousands of buckets become a frame with array operations, not one Python datetime each.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from gridctl.history.base import EnergyResolution
from gridctl.history.timebuckets import HOUR_US, local_midnight, to_us

# (point id, bucket start in µs, value or None)
Row = tuple[int, int, float | None]


def bucket_frame(
    rows: Sequence[Row], keys: Sequence[int | None], labels: Sequence[str], index_us: np.ndarray
) -> pd.DataFrame:
    """A frame indexed by bucket starts (UTC) with one float column per label; absent cells are NaN.

    Rows carry point ids; `keys[j]` is the point id of column `labels[j]` (None: no such point).
    """
    index_us = np.asarray(index_us, dtype=np.int64)
    known = np.array(sorted({k for k in keys if k is not None}), dtype=np.int64)
    values = np.full((len(index_us), len(known)), np.nan)
    if rows and len(index_us) and len(known):
        # One conversion in C: point ids and microsecond buckets stay exact below 2**53.
        table = np.array(rows, dtype=float).reshape(-1, 3)
        key = table[:, 0].astype(np.int64)
        bucket = table[:, 1].astype(np.int64)
        column = np.minimum(np.searchsorted(known, key), len(known) - 1)
        position = np.minimum(np.searchsorted(index_us, bucket), len(index_us) - 1)
        inside = (known[column] == key) & (index_us[position] == bucket)
        values[position[inside], column[inside]] = table[inside, 2]
    column_of = {int(k): j for j, k in enumerate(known)}
    picked = np.full((len(index_us), len(labels)), np.nan)
    for j, k in enumerate(keys):
        if k is not None:
            picked[:, j] = values[:, column_of[k]]
    index = pd.DatetimeIndex(index_us.view("datetime64[us]"), name="bucket").tz_localize("UTC")
    return pd.DataFrame(picked, index=index, columns=pd.Index(list(labels), name="point"))


def energy_index_us(start: date, end: date, resolution: EnergyResolution, tz: ZoneInfo) -> np.ndarray:
    """Starts (µs, UTC) of the local hours, days or months from local date `start` to `end` (exclusive)."""
    if resolution is EnergyResolution.HOUR:
        first, last = to_us(local_midnight(start, tz)), to_us(local_midnight(end, tz))
        return np.arange(first, max(first, last), HOUR_US, dtype=np.int64)
    return local_midnights_us(start, end, "D" if resolution is EnergyResolution.DAY else "MS", tz)


def local_midnights_us(start: date, end: date, frequency: str, tz: ZoneInfo) -> np.ndarray:
    """Local midnights (µs, UTC) of each day ("D") or month start ("MS") in [start, end), as
    `local_midnight` gives them: a midnight inside a DST gap moves forward, an ambiguous one is the first."""
    first = date(start.year, start.month, 1) if frequency == "MS" else start
    naive = pd.date_range(pd.Timestamp(first), pd.Timestamp(end), freq=frequency, inclusive="left", unit="us")
    aware = naive.tz_localize(tz, nonexistent="shift_forward", ambiguous=np.ones(len(naive), dtype=bool))
    return aware.as_unit("us").asi8
def energy_frame(
    rows: Sequence[Row],
    meters: Sequence[int | None],
    dwellings: Sequence[str],
    start: date,
    end: date,
    resolution: EnergyResolution,
    tz: ZoneInfo,
) -> pd.DataFrame:
    """Energy per dwelling from its meter's hourly (HOUR) or daily (DAY, MONTH) rollup rows, indexed in
    local time; `meters[j]` is the point id of the meter of `dwellings[j]`."""
    if resolution is EnergyResolution.MONTH:
        day_starts = energy_index_us(start, end, EnergyResolution.DAY, tz)
        daily = bucket_frame(rows, meters, dwellings, day_starts)
        month_starts = energy_index_us(start, end, resolution, tz)
        month_of_day = np.searchsorted(month_starts, day_starts, side="right") - 1
        # A month with no daily value stays NaN instead of summing to zero.
        sums = daily.groupby(month_of_day).sum(min_count=1).reindex(range(len(month_starts)))
        frame = pd.DataFrame(
            sums.to_numpy(),
            index=pd.DatetimeIndex(month_starts.view("datetime64[us]"), name="bucket").tz_localize("UTC"),
            columns=daily.columns,
        )
    else:
        frame = bucket_frame(rows, meters, dwellings, energy_index_us(start, end, resolution, tz))
    frame.index = frame.index.tz_convert(tz)
    frame.columns.name = "dwelling"
    return frame


ROLLUP_COLUMNS = ["point", "bucket", "sample_count", "value_avg", "value_min", "value_max", "value_last", "energy_kwh"]


def rollup_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """Rollup rows (point address, bucket start in µs, then the rollup fields) in a long frame."""
    frame = pd.DataFrame(list(rows), columns=ROLLUP_COLUMNS)
    frame["bucket"] = pd.to_datetime(frame["bucket"].astype("int64"), unit="us", utc=True)
    for column in ROLLUP_COLUMNS[3:]:
        frame[column] = frame[column].astype(float)
    frame["sample_count"] = frame["sample_count"].astype(int)
    return frame.sort_values(["point", "bucket"], ignore_index=True)
