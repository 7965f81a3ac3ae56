"""A site's recorded history as the backtest replays it, and the past-only view gridctl's forecasts get.

A `Recording` holds regular steps in UTC: row `k` covers [index[k], index[k] + step). Powers are average
kW over the step, prices €/kWh (or the data's currency), carbon kg/kWh. A `PastView` cut at `t` holds only
the rows that had ended by `t`, and refuses any question about later instants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

# Series names of a recording's frame.
LOAD = "load_kw"
PRICE = "price_per_kwh"
EXPORT_PRICE = "export_price_per_kwh"
CARBON = "carbon_kg_per_kwh"
PV_PREFIX = "pv_kw:"


def pv_series(asset_id: str) -> str:
    return f"{PV_PREFIX}{asset_id}"


class LookaheadError(RuntimeError):
    """Something asked a past view for data it could not have had yet."""


@dataclass(frozen=True)
class EvSession:
    """One car's stay at a charger, as the session log recorded it."""

    charger_id: str
    arrival: datetime
    departure: datetime
    energy_kwh: float
    # Where it was read (file:line), for messages.
    source: str = ""


@dataclass
class Recording:
    """What the site measured, step by step, in UTC, with the EV sessions of its log."""

    frame: pd.DataFrame
    step: timedelta
    sessions: list[EvSession] = field(default_factory=list)
    # Unit of the money in the prices ("EUR", "USD", ...), for reports.
    currency: str = "EUR"
    # What was read, for messages: "file (n rows)".
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        index = self.frame.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise ValueError("a recording is indexed by timezone-aware instants")
        self.frame = self.frame.tz_convert("UTC")
        self.frame.index = self.frame.index.as_unit("ns")
        # Plain arrays: the replay reads one row per step, and pandas' row access is slow.
        self._values = {name: self.frame[name].to_numpy(dtype=float) for name in self.frame.columns}
        self._starts = self.frame.index.asi8
        self._step_ns = int(self.step / timedelta(microseconds=1)) * 1000

    @property
    def start(self) -> datetime:
        return self.frame.index[0].to_pydatetime()

    @property
    def end(self) -> datetime:
        return self.frame.index[-1].to_pydatetime() + self.step

    def has(self, name: str) -> bool:
        return name in self._values

    def position(self, moment: datetime) -> int:
        """Row whose step starts at `moment` (may be out of range: before the start or past the end)."""
        return int((pd.Timestamp(moment).value - int(self._starts[0])) // self._step_ns)

    def value(self, name: str, position: int) -> float:
        return float(self._values[name][position])

    def values(self, name: str, first: int, last: int) -> np.ndarray:
        """Rows first..last-1 of a series (the caller checks the range)."""
        return self._values[name][first:last]

    def pv_assets(self) -> list[str]:
        return [name[len(PV_PREFIX):] for name in self.frame.columns if name.startswith(PV_PREFIX)]

    def view(self, cut: datetime) -> PastView:
        return PastView(self, cut)

    def poisoned(self, after: datetime, value: float = 1.0e6) -> Recording:
        """A copy whose every value from `after` on is `value`: replays must not notice before `after`."""
        frame = self.frame.copy()
        frame.loc[frame.index >= pd.Timestamp(after)] = value
        sessions = [s for s in self.sessions if s.arrival < after]
        return Recording(frame, self.step, sessions, self.currency, self.sources)


class PastView:
    """The recording as it was known at `cut`: the steps that had ended by then, nothing later."""

    def __init__(self, recording: Recording, cut: datetime) -> None:
        self._recording = recording
        self.cut = cut
        # Rows 0..known-1 had ended by the cut.
        self.known = max(0, min(recording.position(cut - recording.step) + 1, len(recording.frame)))

    @property
    def step(self) -> timedelta:
        return self._recording.step

    def has(self, name: str) -> bool:
        return self._recording.has(name)

    def last(self, name: str, count: int) -> np.ndarray:
        """The last `count` known values of a series (fewer at the start of the recording)."""
        return self._recording.values(name, max(0, self.known - count), self.known)

    def at(self, name: str, moment: datetime) -> float:
        """The value of the step that started at `moment`, which must have ended by the cut."""
        if moment + self.step > self.cut:
            raise LookaheadError(f"{name} at {moment.isoformat()} asked for at {self.cut.isoformat()}")
        position = self._recording.position(moment)
        if position < 0:
            raise KeyError(f"{name}: no data at {moment.isoformat()}, before the recording starts")
        return self._recording.value(name, position)

    def moments(self, count: int) -> list[datetime]:
        """Start instants of the last `count` known steps."""
        first = max(0, self.known - count)
        return [self._recording.frame.index[i].to_pydatetime() for i in range(first, self.known)]

    def profile(self, name: str, moments: Sequence[datetime], tz, days: int = 7) -> list[float]:
        """A forecast of a series at `moments` from the past only: the value at the same local weekday and
        time a week before when the view has it (tariffs repeat weekly), else the mean at that local time
        of day over the last `days` days, else the last value."""
        step = self.step
        per_day = max(1, round(timedelta(days=1) / step))
        recent = self.last(name, per_day * max(days, 7))
        if not len(recent):
            return [0.0] * len(moments)
        first = self.known - len(recent)
        index = self._recording.frame.index[first:self.known].tz_convert(tz)
        slot = (index.hour * 60 + index.minute).to_numpy()
        by_slot: dict[int, float] = {}
        for key in np.unique(slot):
            by_slot[int(key)] = float(np.nanmean(recent[slot == key][-days:]))
        out = []
        for moment in moments:
            start = moment - step / 2 if _is_mid(moment, step, self._recording) else moment
            week_before = start - timedelta(days=7)
            while week_before + step > self.cut:
                week_before -= timedelta(days=7)
            position = self._recording.position(week_before)
            if 0 <= position < self.known and week_before >= self._recording.start:
                out.append(self._recording.value(name, position))
                continue
            local = start.astimezone(tz)
            out.append(by_slot.get(local.hour * 60 + local.minute, float(recent[-1])))
        return out


def _is_mid(moment: datetime, step: timedelta, recording: Recording) -> bool:
    """Whether `moment` is the middle of a step (the forecaster asks at step middles)."""
    offset = (moment - recording.start) % step
    return offset == step / 2
