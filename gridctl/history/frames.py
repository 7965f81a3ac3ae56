"""Query results as pandas frames: a full bucket index, NaN where there is no data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from gridctl.history.base import EnergyResolution
from gridctl.history.timebuckets import hour_starts, local_days, local_midnight, local_month_starts


def bucket_frame(
    rows: Iterable[tuple[str, datetime, float | None]], columns: Sequence[str], index: Sequence[datetime]
) -> pd.DataFrame:
    """A frame indexed by `index` (bucket starts) with one float column per address; absent cells NaN."""
    position = {ts: i for i, ts in enumerate(index)}
    column_of = {address: j for j, address in enumerate(columns)}
    values = np.full((len(index), len(columns)), np.nan)
    for address, ts, value in rows:
        i = position.get(ts)
        if i is not None and value is not None:
            values[i, column_of[address]] = value
    frame = pd.DataFrame(
        values, index=pd.DatetimeIndex(list(index), name="bucket"), columns=pd.Index(list(columns), name="point")
    )
    if frame.index.tz is None:
        frame.index = frame.index.tz_localize("UTC")
    return frame


def energy_index(start: date, end: date, resolution: EnergyResolution, tz: ZoneInfo) -> list[datetime]:
    """UTC starts of the local hours, days or months from local date `start` to `end` (exclusive)."""
    if resolution is EnergyResolution.HOUR:
        return hour_starts(local_midnight(start, tz), local_midnight(end, tz))
    if resolution is EnergyResolution.DAY:
        return [local_midnight(d, tz) for d in local_days(start, end)]
    return [local_midnight(d, tz) for d in local_month_starts(start, end)]


def energy_frame(
    rows: Iterable[tuple[str, datetime, float | None]],
    dwellings: Sequence[str],
    start: date,
    end: date,
    resolution: EnergyResolution,
    tz: ZoneInfo,
) -> pd.DataFrame:
    """Energy per dwelling: rows are hourly (HOUR) or daily (DAY, MONTH) rollup buckets."""
    if resolution is EnergyResolution.MONTH:
        daily = bucket_frame(rows, dwellings, energy_index(start, end, EnergyResolution.DAY, tz))
        local = daily.index.tz_convert(tz)
        months = [local_midnight(date(ts.year, ts.month, 1), tz) for ts in local]
        # A month with no daily value stays NaN instead of summing to zero.
        frame = daily.groupby(pd.DatetimeIndex(months, name="bucket")).sum(min_count=1)
        frame = frame.reindex(pd.DatetimeIndex(energy_index(start, end, resolution, tz), name="bucket"))
    else:
        frame = bucket_frame(rows, dwellings, energy_index(start, end, resolution, tz))
    frame.index = frame.index.tz_convert(tz)
    frame.columns.name = "dwelling"
    return frame


ROLLUP_COLUMNS = ["point", "bucket", "sample_count", "value_avg", "value_min", "value_max", "value_last", "energy_kwh"]


def rollup_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """Rollup rows (point address first, bucket as UTC datetime second) in a long frame."""
    frame = pd.DataFrame(list(rows), columns=ROLLUP_COLUMNS)
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    for column in ROLLUP_COLUMNS[3:]:
        frame[column] = frame[column].astype(float)
    frame["sample_count"] = frame["sample_count"].astype(int)
    return frame.sort_values(["point", "bucket"], ignore_index=True)
