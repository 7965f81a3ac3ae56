"""Dwelling consumption on top of the historian: one dwelling's series, building comparisons, open-data
aggregates that never cover fewer than the minimum number of dwellings, and cost under a tariff."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import pandas as pd

from gridctl.api.db import Database
from gridctl.config.models import Site, Tariff, TimeWindow
from gridctl.config.units import UNITS
from gridctl.history import EnergyResolution, Historian
from gridctl.history.rollups import counter_rise

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Resolution(StrEnum):
    QUARTER_HOUR = "15min"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    @property
    def is_load_curve(self) -> bool:
        return self in (Resolution.QUARTER_HOUR, Resolution.HOUR)


@dataclass(frozen=True)
class Bucket:
    start: datetime  # local time of the site
    energy_kwh: float | None


class NotEnoughDwellings(Exception):
    def __init__(self, count: int, minimum: int) -> None:
        super().__init__(f"an aggregate needs at least {minimum} dwellings; this one has {count}")
        self.count = count
        self.minimum = minimum


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant a local day begins."""
    return datetime.combine(day, time(), tz).astimezone(UTC)


def bucket_starts(start: date, end: date, resolution: EnergyResolution, tz: ZoneInfo) -> list[datetime]:
    """UTC starts of the hourly or daily rollup buckets of local days [start, end)."""
    if resolution is EnergyResolution.HOUR:
        lo, hi = local_midnight(start, tz), local_midnight(end, tz)
        return [lo + timedelta(hours=i) for i in range(int((hi - lo) / timedelta(hours=1)))]
    return [local_midnight(start + timedelta(days=i), tz) for i in range((end - start).days)]


@functools.lru_cache(maxsize=512)
def _local_buckets(start: date, end: date, resolution: EnergyResolution,
                   tz_name: str) -> tuple[tuple[int, datetime], ...]:
    """(epoch seconds, local start) of each bucket; residents ask for the same periods over and over."""
    tz = ZoneInfo(tz_name)
    return tuple((int(ts.timestamp()), ts.astimezone(tz)) for ts in bucket_starts(start, end, resolution, tz))


class RollupReader:
    """One meter's hourly or daily energy read straight from the historian's rollup tables.

    The historian's `rollups()` answers the same in a DataFrame; building one costs several times the
    query, and a resident's request is nothing else. The tables are the historian's migrated schema, in
    the database the API shares with it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    async def energy(self, site_id: str, address: str, lo: datetime, hi: datetime,
                     resolution: EnergyResolution) -> dict[int, float]:
        table = "rollup_hourly" if resolution is EnergyResolution.HOUR else "rollup_daily"
        rows = await self.db.fetch(
            f"SELECT r.bucket, r.energy_kwh FROM {table} AS r JOIN points AS p ON p.id = r.point_id "
            "WHERE p.site_id = ? AND p.address = ? AND r.bucket >= ? AND r.bucket < ?",
            [site_id, address, self.db.ts(lo), self.db.ts(hi)],
        )
        return {self.db.epoch_seconds(bucket): energy for bucket, energy in rows if energy is not None}


def _number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def meter_of(site: Site, dwelling_id: str) -> str:
    for dwelling in site.dwellings:
        if dwelling.id == dwelling_id:
            return dwelling.meter
    raise KeyError(dwelling_id)


async def dwelling_series(historian: Historian, reader: RollupReader, site: Site, dwelling_id: str, start: date,
                          end: date, resolution: Resolution) -> list[Bucket]:
    """Energy consumed by one dwelling per local 15 min, hour, day or month in [start, end)."""
    tz = site.tz
    meter = meter_of(site, dwelling_id)
    if resolution is Resolution.QUARTER_HOUR:
        return await _quarter_hours(historian, site, meter, start, end)
    stored = EnergyResolution.HOUR if resolution is Resolution.HOUR else EnergyResolution.DAY
    index = _local_buckets(start, end, stored, site.timezone)
    if not index:
        return []
    by_start = await reader.energy(site.id, meter, local_midnight(start, tz), local_midnight(end, tz), stored)
    buckets = [Bucket(local, by_start.get(seconds)) for seconds, local in index]
    if resolution is Resolution.MONTH:
        months: dict[date, list[float | None]] = {}
        for b in buckets:
            months.setdefault(date(b.start.year, b.start.month, 1), []).append(b.energy_kwh)
        return [
            Bucket(local_midnight(month, tz).astimezone(tz),
                   None if all(v is None for v in values) else sum(v for v in values if v is not None))
            for month, values in months.items()
        ]
    return buckets


async def _quarter_hours(historian: Historian, site: Site, meter: str, start: date, end: date) -> list[Bucket]:
    tz = site.tz
    lo, hi = local_midnight(start, tz), local_midnight(end, tz)
    step = timedelta(minutes=15)
    point = site.point(meter)
    factor = UNITS[point.unit][1]
    # The last counter value of each quarter hour; a quarter's consumption is the rise since the previous one.
    frame = await historian.query(site.id, [meter], lo - step, hi, step, "last")
    values = [_number(v) for v in frame[meter]]
    starts = list(frame.index)
    out = []
    for i in range(1, len(values)):
        now, before = values[i], values[i - 1]
        energy = None
        if now is not None and before is not None:
            energy = counter_rise(before, now, point.max) * factor
        out.append(Bucket(starts[i].to_pydatetime().astimezone(tz), energy))
    return out


def building_dwellings(site: Site, building_id: str) -> list[str]:
    return [d.id for d in site.dwellings if d.building == building_id]


async def daily_totals(historian: Historian, site: Site, dwellings: list[str], start: date,
                       end: date) -> pd.DataFrame:
    """Daily energy of each dwelling (columns) per local day."""
    return await historian.dwelling_energy(site.id, start, end, EnergyResolution.DAY, dwellings)


@dataclass(frozen=True)
class Comparison:
    dwelling_kwh: float | None
    median_kwh: float
    dwellings: int
    days: list[tuple[date, float | None, float | None]]  # (day, this dwelling, median of the others)


async def compare_with_building(historian: Historian, site: Site, dwelling_id: str, start: date, end: date,
                                minimum: int) -> Comparison:
    """This dwelling's consumption against the median of its building's dwellings, over the days on which at
    least `minimum` of them reported; refused when fewer than `minimum` dwellings take part."""
    building = next(d.building for d in site.dwellings if d.id == dwelling_id)
    members = building_dwellings(site, building)
    if len(members) < minimum:
        raise NotEnoughDwellings(len(members), minimum)
    frame = await daily_totals(historian, site, members, start, end)
    # Days on which enough dwellings reported; the dwellings compared are those with data on all of them.
    days_used = frame.index[frame.notna().sum(axis=1) >= minimum]
    used = frame.loc[days_used]
    complete = [d for d in members if len(days_used) and not used[d].isna().any()]
    if len(complete) < minimum:
        raise NotEnoughDwellings(len(complete), minimum)
    totals = used[complete].sum()
    own = used[dwelling_id]
    days = []
    for ts, row in frame.iterrows():
        present = row[complete].dropna()
        median = float(present.median()) if len(present) >= minimum else None
        days.append((ts.date(), _number(frame.loc[ts, dwelling_id]), median))
    return Comparison(
        dwelling_kwh=None if own.isna().any() else float(own.sum()),
        median_kwh=float(statistics.median(totals.tolist())),
        dwellings=len(complete),
        days=days,
    )


@dataclass(frozen=True)
class AggregateDay:
    day: date
    energy_kwh: float | None  # None: withheld
    dwellings: int  # dwellings reporting that day
    note: str | None = None  # why it is withheld


def publishable_building(site: Site, building_id: str, minimum: int) -> bool:
    """A building's aggregate may be published when it covers enough dwellings and so does the rest of the site,
    so that the site total minus the building total never isolates a handful of dwellings."""
    members = len(building_dwellings(site, building_id))
    rest = len(site.dwellings) - members
    return members >= minimum and (rest == 0 or rest >= minimum)


async def open_daily(historian: Historian, site: Site, start: date, end: date,
                     minimum: int) -> dict[str | None, list[AggregateDay]]:
    """Daily consumption of the site's dwellings (key None) and of each building's (key: its id).

    No published figure covers fewer than `minimum` reporting dwellings, and neither does the difference
    of two figures of the same day: when the buildings withheld that day (too few reporting, or too small)
    hold between 1 and `minimum - 1` reporting dwellings, the site total minus the published buildings would
    be theirs, so published buildings are withheld too, the smallest first, until it is not. The site total
    is kept: it is the figure most users want.
    """
    if len(site.dwellings) < minimum:
        raise NotEnoughDwellings(len(site.dwellings), minimum)
    members: dict[str, list[str]] = {}
    for dwelling in site.dwellings:
        members.setdefault(dwelling.building, []).append(dwelling.id)
    eligible = {b for b in members if publishable_building(site, b, minimum)}
    frame = await daily_totals(historian, site, [d.id for d in site.dwellings], start, end)
    out: dict[str | None, list[AggregateDay]] = {None: [], **{b: [] for b in members}}
    for ts, row in frame.iterrows():
        day = ts.date()
        reporting = {b: int(row[ids].notna().sum()) for b, ids in members.items()}
        energy = {b: float(row[ids].dropna().sum()) for b, ids in members.items()}
        total = sum(reporting.values())
        published = {b for b in eligible if reporting[b] >= minimum}
        if total >= minimum:
            hidden = total - sum(reporting[b] for b in published)
            for b in sorted(published, key=lambda b: (reporting[b], b)):
                if hidden == 0 or hidden >= minimum:
                    break
                published.discard(b)
                hidden += reporting[b]
            out[None].append(AggregateDay(day, sum(energy.values()), total))
        else:
            published = set()
            out[None].append(AggregateDay(day, None, total, f"fewer than {minimum} dwellings reported"))
        for b in members:
            if b in published:
                out[b].append(AggregateDay(day, energy[b], reporting[b]))
            else:
                note = (f"fewer than {minimum} dwellings reported" if reporting[b] < minimum else
                        "withheld so that the site total minus this building's would not reveal the few dwellings "
                        "of the rest of the site that reported")
                out[b].append(AggregateDay(day, None, reporting[b], note))
    return out


# --- tariffs ----------------------------------------------------------------------------------------


def in_window(moment: datetime, window: TimeWindow) -> bool:
    clock = moment.time()
    day = _WEEKDAYS[moment.weekday()]
    if window.start <= window.end:
        return day in window.days and window.start <= clock < window.end
    # Past midnight: the evening part belongs to today, the morning part to the day the window began.
    if clock >= window.start:
        return day in window.days
    previous = _WEEKDAYS[(moment - timedelta(days=1)).weekday()]
    return clock < window.end and previous in window.days


@dataclass(frozen=True)
class Cost:
    cost_eur: float | None
    offpeak_energy_kwh: float | None
    peak_energy_kwh: float | None
    note: str | None


def cost_of(tariff: Tariff, hourly: list[Bucket]) -> Cost:
    """The energy cost of local-hour buckets under a tariff (energy part, taxes included)."""
    known = [b for b in hourly if b.energy_kwh is not None]
    total = sum(b.energy_kwh for b in known)  # type: ignore[misc]
    if tariff.kind == "base":
        return Cost(total * tariff.base_price_eur_per_kwh, None, None, None)  # type: ignore[operator]
    if tariff.kind == "spot":
        return Cost(None, None, None, "spot prices are not stored: no cost is computed")
    offpeak = sum(b.energy_kwh for b in known if any(in_window(b.start, w) for w in tariff.offpeak_windows))  # type: ignore[misc]
    peak = total - offpeak
    if tariff.kind == "hp_hc":
        cost = offpeak * tariff.offpeak_price_eur_per_kwh + peak * tariff.peak_price_eur_per_kwh  # type: ignore[operator]
        return Cost(cost, offpeak, peak, None)
    blue = tariff.tempo_prices_eur_per_kwh.get("blue")
    if not blue:
        return Cost(None, offpeak, peak, "the tariff has no blue Tempo prices")
    cost = offpeak * blue["offpeak"] + peak * blue["peak"]
    return Cost(cost, offpeak, peak, "Tempo day colours are not stored: every day is priced as a blue day")


def month_bounds(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


def local_day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz)
