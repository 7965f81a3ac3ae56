"""The historian's interface and its vocabulary: a point is known by its site and its address
("<device>/<point>", unique within the site only); quality codes; quarantine of readings whose timestamps
are far from the receive time; write and retention results."""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from drivers.base import Quality, Reading
from gridctl.config.units import UNITS, Quantity

if TYPE_CHECKING:
    import pandas as pd

    from gridctl.config import Site

# Stored compactly as a small integer; the order matters nowhere.
QUALITY_CODES: dict[Quality, int] = {Quality.GOOD: 0, Quality.STALE: 1, Quality.BAD: 2}
QUALITY_BY_CODE: dict[int, Quality] = {code: quality for quality, code in QUALITY_CODES.items()}

DEFAULT_RAW_RETENTION_DAYS = 400
# Rollups outlive raw readings: hourly for ten years, daily for ever (None).
DEFAULT_HOURLY_RETENTION_DAYS = 3660


class HistorianUnavailable(Exception):
    """The database cannot be reached (down, refusing connections, or too slow to answer)."""


class Aggregate(StrEnum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    FIRST = "first"
    LAST = "last"
    SUM = "sum"
    COUNT = "count"


class EnergyResolution(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One point as the historian stores it."""

    address: str
    site_id: str
    unit: str
    kind: str
    # Energy counters: factor from the point's unit to kWh, and the value at which the counter wraps.
    energy_factor_kwh: float | None = None
    counter_max: float | None = None


@dataclass(frozen=True, slots=True)
class SiteEntry:
    site_id: str
    timezone: str
    raw_retention_days: int
    points: tuple[CatalogueEntry, ...]
    # dwelling id -> address of its energy counter
    dwellings: dict[str, str]


def site_entry(site: Site, raw_retention_days: int = DEFAULT_RAW_RETENTION_DAYS) -> SiteEntry:
    """The catalogue rows a site description gives."""
    points = []
    for address, _device, point in site.all_points():
        factor = None
        counter_max = None
        if point.kind == "energy_counter":
            quantity, factor = UNITS[point.unit]
            if quantity is not Quantity.ENERGY:
                factor = None
            counter_max = point.max
        points.append(
            CatalogueEntry(
                address=address,
                site_id=site.id,
                unit=point.unit,
                kind=str(point.kind),
                energy_factor_kwh=factor,
                counter_max=counter_max,
            )
        )
    return SiteEntry(
        site_id=site.id,
        timezone=site.timezone,
        raw_retention_days=raw_retention_days,
        points=tuple(points),
        dwellings={d.id: d.meter for d in site.dwellings},
    )


@dataclass(frozen=True, slots=True)
class SiteReadings:
    """Readings of one site's points that arrived together; a write carries any number of these.

    `received_at` (default: the write's) is when they arrived: timestamps are judged against it. A site
    of None means the readings' site cannot be told (a spool left by an older version): they are
    quarantined, never stored as any site's history.
    """

    site_id: str | None
    readings: Sequence[Reading]
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SharedSeries:
    """A series several sites wrote into while points were keyed by their address alone. It cannot be
    split: it stays with the site that owned the point last."""

    site_id: str
    address: str
    claimed_by: tuple[str, ...]
    readings: int


@dataclass(frozen=True, slots=True)
class QuarantinePolicy:
    """Readings further than this from the receive time are set aside, not stored as history."""

    max_future: timedelta = timedelta(minutes=10)
    max_past: timedelta = timedelta(days=7)

    def reason(self, ts: datetime, received_at: datetime) -> str | None:
        if ts - received_at > self.max_future:
            return "future"
        if received_at - ts > self.max_past:
            return "past"
        return None


@dataclass(slots=True)
class WriteOutcome:
    """What one write did. `stored` counts new rows; a retried reading already stored is not new."""

    received: int = 0
    stored: int = 0
    quarantined: int = 0


@dataclass(slots=True)
class RetentionOutcome:
    raw_cutoffs: dict[str, datetime] = field(default_factory=dict)
    chunks_dropped: int = 0
    rows_deleted: int = 0
    hourly_rows_deleted: int = 0


@dataclass(frozen=True, slots=True)
class QuarantinedReading:
    site_id: str | None
    address: str
    ts: datetime
    value: float | None
    quality: Quality
    received_at: datetime
    reason: str


def numeric_value(value: object) -> float | None:
    """Readings' values as floats: booleans and states become numbers, text and NaN become None."""
    if value is None or isinstance(value, str):
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


def require_utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"naive timestamp {ts.isoformat()}: readings carry timezone-aware UTC times")
    return ts


def partition_quarantine(
    readings: Iterable[Reading], received_at: datetime, policy: QuarantinePolicy
) -> tuple[list[Reading], list[tuple[Reading, str]]]:
    """Split readings into those to store and those to quarantine (with the reason)."""
    keep: list[Reading] = []
    held: list[tuple[Reading, str]] = []
    # Checking the batch bounds first keeps the common case (a whole batch near now) one pass.
    readings = list(readings)
    if not readings:
        return keep, held
    lo = received_at - policy.max_past
    hi = received_at + policy.max_future
    for reading in readings:
        ts = require_utc(reading.ts)
        if lo <= ts <= hi:
            keep.append(reading)
        else:
            held.append((reading, "future" if ts > hi else "past"))
    return keep, held


def utc_now() -> datetime:
    return datetime.now(UTC)


class Historian(abc.ABC):
    """Time-series history of a site's points: ingest, rollups, retention and queries.

    Both back ends (TimescaleDB and SQLite) behave the same; every method is a coroutine.
    """

    kind: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect; raises HistorianUnavailable when the database cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; idempotent."""

    @property
    def available(self) -> bool:
        """False from a failure to reach the database until it answers again."""
        return True

    async def __aenter__(self) -> Historian:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def upgrade(self, sites: Sequence[Site | SiteEntry] = ()) -> list[int]:
        """Apply pending schema migrations; returns the versions applied.

        `sites`: descriptions of the sites that wrote into this database, so that keying points by site
        can tell which series several sites shared (see `shared_series`).
        """

    @abc.abstractmethod
    async def shared_series(self) -> list[SharedSeries]:
        """Series found shared by several sites when points became keyed by site (empty on a database
        created keyed by site)."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The newest applied migration (0 on an empty database)."""

    @abc.abstractmethod
    async def sync_site(self, site: Site | SiteEntry) -> None:
        """Bring the point catalogue, the dwellings and the site's settings in line with a site file."""

    @abc.abstractmethod
    async def write(self, batch: Iterable[SiteReadings], *, received_at: datetime | None = None) -> WriteOutcome:
        """Store the readings of any number of sites and devices in one transaction. Idempotent: a
        reading already stored is not stored twice. Points and sites missing from the catalogue are
        registered.

        Readings far from their receive time (a group's `received_at`, else this one, else now) go to
        the quarantine. Raises HistorianUnavailable when the database is unreachable; nothing is stored
        then.
        """

    @abc.abstractmethod
    async def refresh_rollups(self) -> int:
        """Recompute the hourly and daily rollup buckets touched by writes since the last refresh;
        returns how many hourly buckets were recomputed."""

    @abc.abstractmethod
    async def query(
        self,
        site_id: str,
        addresses: Sequence[str],
        start: datetime,
        end: datetime,
        bucket: timedelta,
        aggregate: Aggregate | str = Aggregate.AVG,
        *,
        timezone: str | None = None,
    ) -> pd.DataFrame:
        """Good readings of a site's `addresses` in [start, end) aggregated per bucket.

        One row per bucket start (UTC) over the whole range, one column per address; a bucket without
        data is NaN, never interpolated. Buckets of whole days start on local midnight of `timezone`
        when given (23- and 25-hour days at DST changes), otherwise on UTC midnight.
        """

    @abc.abstractmethod
    async def rollups(
        self, site_id: str, addresses: Sequence[str], start: datetime, end: datetime,
        resolution: EnergyResolution | str = "hour",
    ) -> pd.DataFrame:
        """A site's stored hourly or daily rollup rows with bucket start in [start, end): one row per point and
        bucket, columns point, bucket (UTC), sample_count, value_avg, value_min, value_max, value_last,
        energy_kwh."""

    @abc.abstractmethod
    async def latest(self, site_id: str, addresses: Sequence[str]) -> dict[str, Reading]:
        """The newest stored reading of each of a site's addresses that has one."""

    @abc.abstractmethod
    async def dwelling_energy(
        self,
        site_id: str,
        start: date,
        end: date,
        resolution: EnergyResolution | str = EnergyResolution.DAY,
        dwellings: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Energy (kWh) consumed by each dwelling per local hour, day or month from `start` to `end`
        (local dates, end exclusive), from the rollups. Index: bucket starts in the site's timezone;
        columns: dwelling ids; NaN where no data."""

    @abc.abstractmethod
    async def apply_retention(self, now: datetime | None = None) -> RetentionOutcome:
        """Drop raw readings older than each site's retention (after rolling them up) and hourly rollups
        older than the hourly retention."""

    @abc.abstractmethod
    async def quarantined(self, limit: int = 1000, *, site_id: str | None = None) -> list[QuarantinedReading]:
        """Readings set aside (for their timestamps, or for want of a site), oldest first; of one site
        when `site_id` is given."""

    @abc.abstractmethod
    async def capabilities(self) -> dict[str, object]:
        """What the server offers and what the historian uses of it."""
