"""The load gridctl does not schedule: a weekday × time-of-day profile of the recent weeks, corrected
to the level of the last hours."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo

import numpy as np
import pandas as pd

from gridctl.forecast.recent import Recent

LOCAL_TZ = "Europe/Paris"
# The profile is the mean of the same weekday and time of day over the history kept; the level of the
# last hours corrects it, less and less with lead time.
RECENT_HOURS = 3.0
CORRECTION_DECAY_HOURS = 3.0


def _day_kind(index: pd.DatetimeIndex, holidays: set[date]) -> np.ndarray:
    # Public holidays behave like Sundays.
    kinds = index.day_of_week.to_numpy().copy()
    if holidays:
        is_holiday = np.array([d in holidays for d in index.date])
        kinds[is_holiday] = 6
    return kinds


def load_forecast(
    history_kw: pd.Series,
    index: pd.DatetimeIndex,
    *,
    weeks: int = 4,
    recent_hours: float = 24.0,
    correction_decay_hours: float = 12.0,
    max_correction: float = 2.0,
    holidays: Iterable[date] = (),
    tz: str = LOCAL_TZ,
) -> pd.Series:
    """Forecast a meter's mean power (kW) on each step of `index` from its history (kW, any regular step).

    The profile is the mean over the last `weeks` weeks for the same local weekday and time of day
    (holidays count as Sundays). It is scaled by the ratio of the last `recent_hours` of actuals to the
    profile over the same hours; that correction fades with lead time (`correction_decay_hours`).
    """
    if history_kw.index.tz is None or index.tz is None:
        raise ValueError("history and horizon must be timezone-aware")
    hol = set(holidays)
    step = pd.Timedelta(index[1] - index[0]) if len(index) > 1 else pd.Timedelta("15min")
    hist = history_kw.dropna().sort_index().resample(step).mean().dropna()
    if hist.empty:
        return pd.Series(np.nan, index=index, name=history_kw.name)
    hist = hist[hist.index > hist.index[-1] - pd.Timedelta(weeks=weeks)]
    local = hist.index.tz_convert(tz)
    slot = (local.hour * 60 + local.minute).to_numpy()
    frame = pd.DataFrame({"kw": hist.to_numpy(), "kind": _day_kind(local, hol), "slot": slot})
    by_kind_slot = frame.groupby(["kind", "slot"])["kw"].mean()
    by_slot = frame.groupby("slot")["kw"].mean()
    overall = float(frame["kw"].mean())

    def profile(times: pd.DatetimeIndex) -> np.ndarray:
        loc = times.tz_convert(tz)
        kinds = _day_kind(loc, hol)
        slots = (loc.hour * 60 + loc.minute).to_numpy()
        out = np.empty(len(times))
        for i, (k, s) in enumerate(zip(kinds, slots, strict=True)):
            out[i] = by_kind_slot.get((k, s), by_slot.get(s, overall))
        return out

    base = profile(index)
    recent = hist[hist.index > hist.index[-1] - pd.Timedelta(hours=recent_hours)]
    expected = profile(recent.index).sum()
    ratio = float(recent.sum() / expected) if expected > 1e-9 else 1.0
    ratio = float(np.clip(ratio, 1.0 / max_correction, max_correction))
    lead_h = (index - hist.index[-1]).total_seconds().to_numpy() / 3600.0
    factor = 1.0 + (ratio - 1.0) * np.exp(-np.maximum(lead_h, 0.0) / correction_decay_hours)
    return pd.Series(base * factor, index=index, name=history_kw.name)


class LoadHistory:
    """Quarter-hour means of a site's load, kept by age, and the forecast made from them."""

    def __init__(self, days: int) -> None:
        self.days = days
        self._kw = Recent(timedelta(days=days))

    def add(self, moment: datetime, kw: float) -> None:
        self._kw.add(moment, kw)

    def __len__(self) -> int:
        return len(self._kw)

    def span(self) -> timedelta:
        """How far back the history reaches."""
        return self._kw.span()

    def forecast(self, mids: list[datetime], tz: tzinfo) -> list[float]:
        """Mean load (kW) over the steps whose middles are `mids` (0 without any history)."""
        last = self._kw.last()
        if last is None:
            return [0.0] * len(mids)
        history = pd.Series([v for _, v in self._kw], index=pd.DatetimeIndex([t for t, _ in self._kw]))
        step = mids[1] - mids[0] if len(mids) > 1 else timedelta(minutes=15)
        index = pd.DatetimeIndex([t - step / 2 for t in mids])
        weeks = max(1, math.ceil(self.days / 7))
        predicted = load_forecast(history, index, weeks=weeks, recent_hours=RECENT_HOURS,
                                  correction_decay_hours=CORRECTION_DECAY_HOURS, tz=str(tz))
        fallback = last[1]
        return [fallback if math.isnan(v) else max(float(v), 0.0) for v in predicted]
