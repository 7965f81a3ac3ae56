"""Forecast accuracy once the actuals are in: errors of the forecasts issued, by quantity and lead time.

The site forecaster hands every forecast it issues (at most one per quantity and quarter-hour) and
every quarter-hour actual it measures; each forecast value is scored against the actual of the
quarter-hour it was for, and the errors are summed per hour of that quarter-hour and lead-time band:
up to 1 h ahead, 1–6 h and 6–24 h. MAE is in kW; nRMSE is the RMSE over the mean measured value of
the same samples. Errors are kept for `KEEP` (a month's KPIs), in memory: a restart starts afresh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

QUARTER = timedelta(minutes=15)
# Lead-time bands by their upper end: (0, 1 h], (1 h, 6 h], (6 h, 24 h].
HORIZONS: tuple[tuple[str, timedelta], ...] = (("1h", timedelta(hours=1)), ("6h", timedelta(hours=6)),
                                               ("24h", timedelta(hours=24)))
QUANTITIES = ("load", "pv")
KEEP = timedelta(days=35)
_EPOCH = datetime(2000, 1, 1)


def quarter_of(moment: datetime) -> datetime:
    """Start of the quarter-hour holding `moment`."""
    epoch = _EPOCH.replace(tzinfo=moment.tzinfo)
    return epoch + ((moment - epoch) // QUARTER) * QUARTER


def horizon_of(lead: timedelta) -> str | None:
    for name, upper in HORIZONS:
        if timedelta(0) < lead <= upper:
            return name
    return None


@dataclass
class Errors:
    """Sums of errors (forecast − actual) of one quantity and band."""

    samples: int = 0
    abs_kw: float = 0.0
    squared_kw2: float = 0.0
    error_kw: float = 0.0
    actual_kw: float = 0.0

    def add(self, error_kw: float, actual_kw: float) -> None:
        self.samples += 1
        self.abs_kw += abs(error_kw)
        self.squared_kw2 += error_kw * error_kw
        self.error_kw += error_kw
        self.actual_kw += abs(actual_kw)

    def merge(self, other: Errors) -> None:
        self.samples += other.samples
        self.abs_kw += other.abs_kw
        self.squared_kw2 += other.squared_kw2
        self.error_kw += other.error_kw
        self.actual_kw += other.actual_kw

    @property
    def mae_kw(self) -> float:
        return self.abs_kw / self.samples if self.samples else math.nan

    @property
    def rmse_kw(self) -> float:
        return math.sqrt(self.squared_kw2 / self.samples) if self.samples else math.nan

    @property
    def bias_kw(self) -> float:
        return self.error_kw / self.samples if self.samples else math.nan

    @property
    def nrmse(self) -> float:
        mean = self.actual_kw / self.samples if self.samples else 0.0
        return self.rmse_kw / mean if mean > 1e-9 else math.nan


@dataclass(frozen=True)
class AccuracyFigure:
    quantity: str
    horizon: str
    samples: int
    mae_kw: float
    rmse_kw: float
    bias_kw: float
    nrmse: float


class ForecastAccuracy:
    """Forecasts waiting for their actuals, and the errors of those scored, per hour."""

    def __init__(self, keep: timedelta = KEEP) -> None:
        self.keep = keep
        # quantity -> quarter-hour start -> [(band, forecast value)]
        self._pending: dict[str, dict[datetime, list[tuple[str, float]]]] = {q: {} for q in QUANTITIES}
        self._last_issue: dict[str, datetime] = {}
        # (hour start, quantity, band) -> errors
        self._hours: dict[tuple[datetime, str, str], Errors] = {}

    def issued(self, quantity: str, issued_at: datetime, start: datetime, step: timedelta,
               values_kw: Sequence[float]) -> None:
        """A forecast of `quantity`: `values_kw[k]` is the mean over [start + k·step, start + (k+1)·step)."""
        issue_quarter = quarter_of(issued_at)
        if self._last_issue.get(quantity) == issue_quarter or not values_kw:
            return  # one forecast per quarter-hour counts (re-plans on events would weigh their moments more)
        self._last_issue[quantity] = issue_quarter
        pending = self._pending[quantity]
        for old in [q for q in pending if q < issue_quarter - timedelta(hours=2)]:
            del pending[old]
        end = start + step * len(values_kw)
        quarter = max(issue_quarter, quarter_of(start))
        while quarter < end:
            middle = quarter + QUARTER / 2
            k = int((middle - start) / step)
            band = horizon_of(middle - issued_at)
            if band is not None and 0 <= k < len(values_kw):
                pending.setdefault(quarter, []).append((band, float(values_kw[k])))
            quarter += QUARTER

    def actual(self, quantity: str, quarter: datetime, kw: float) -> None:
        """What `quantity` was, on average, over the quarter-hour starting at `quarter`."""
        entries = self._pending[quantity].pop(quarter, None)
        if not entries:
            return
        hour = quarter.replace(minute=0, second=0, microsecond=0)
        for band, value in entries:
            self._hours.setdefault((hour, quantity, band), Errors()).add(value - kw, kw)
        for key in [k for k in self._hours if k[0] < hour - self.keep]:
            del self._hours[key]

    def errors(self, since: datetime | None = None, until: datetime | None = None) -> dict[tuple[str, str], Errors]:
        """Errors by (quantity, band) of the quarter-hours in [since, until)."""
        out = {(q, band): Errors() for q in QUANTITIES for band, _ in HORIZONS}
        for (hour, quantity, band), errors in self._hours.items():
            if (since is None or hour >= since) and (until is None or hour < until):
                out[(quantity, band)].merge(errors)
        return out

    def figures(self, since: datetime | None = None, until: datetime | None = None) -> list[AccuracyFigure]:
        return [AccuracyFigure(q, band, e.samples, e.mae_kw, e.rmse_kw, e.bias_kw, e.nrmse)
                for (q, band), e in self.errors(since, until).items()]
