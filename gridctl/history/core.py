"""What both historians do alike, written once: the point catalogue keyed by (site, address), syncing
it with site files, registering points and sites that only readings name, turning a write's groups of
readings into rows, and applying the migrations. The back ends (sqlite.py, timescale.py) keep what
differs: their connection, SQL dialect, COPY, hypertables, rollups and queries.

Shared SQL is written with `?` placeholders; the PostgreSQL back end turns them into psycopg's.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drivers.base import Reading
from gridctl.history.base import (
    DEFAULT_HOURLY_RETENTION_DAYS,
    DEFAULT_RAW_RETENTION_DAYS,
    QUALITY_BY_CODE,
    QUALITY_CODES,
    Historian,
    QuarantinedReading,
    QuarantinePolicy,
    SharedSeries,
    SiteEntry,
    SiteReadings,
    WriteOutcome,
    numeric_value,
    partition_quarantine,
    site_entry,
    utc_now,
)
from gridctl.history.migrations import MIGRATIONS, Dialect, Migration, UpgradeContext, statements

Row = tuple[Any, ...]
# Readings whose site cannot be told are set aside with this reason.
NO_SITE = "no-site"


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    params: Sequence[Any] = ()
    # Rows for executemany; the statement is skipped when there are none.
    many: Sequence[Sequence[Any]] | None = None


CATALOGUE_SQL = (
    "SELECT p.id, p.site_id, p.address, p.kind, coalesce(s.timezone, 'UTC') FROM points AS p "
    "LEFT JOIN sites AS s ON s.id = p.site_id"
)
QUARANTINE_INSERT = (
    "INSERT INTO readings_quarantine (site_id, address, ts, value, quality, error, received_at, reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
QUARANTINE_SELECT = "SELECT site_id, address, ts, value, quality, received_at, reason FROM readings_quarantine"
SHARED_SERIES_SQL = "SELECT site_id, address, claimed_by, readings FROM shared_series ORDER BY site_id, address"


class PointCatalogue:
    """Point ids by site and address, with each point's kind and its site's time zone."""

    def __init__(self) -> None:
        self.by_site: dict[str | None, dict[str, int]] = {}
        self.kinds: dict[int, str] = {}
        self.timezones: dict[int, str] = {}
        self.loaded = False

    def load(self, rows: Iterable[Row]) -> None:
        by_site: dict[str | None, dict[str, int]] = {}
        kinds: dict[int, str] = {}
        timezones: dict[int, str] = {}
        for point_id, site_id, address, kind, tz in rows:
            by_site.setdefault(site_id, {})[address] = point_id
            kinds[point_id] = kind
            timezones[point_id] = tz
        self.by_site, self.kinds, self.timezones, self.loaded = by_site, kinds, timezones, True

    def ids(self, site_id: str) -> dict[str, int]:
        return self.by_site.get(site_id, {})

    def ids_of(self, site_id: str, addresses: Iterable[str]) -> dict[int, str]:
        """Point id -> address of those of `addresses` the site has."""
        ids = self.ids(site_id)
        return {ids[a]: a for a in addresses if a in ids}

    def missing(self, groups: Iterable[SiteReadings]) -> tuple[set[str], set[tuple[str, str]]]:
        """Sites and (site, address) pairs the readings name that the catalogue lacks."""
        sites: set[str] = set()
        points: set[tuple[str, str]] = set()
        for group in groups:
            if group.site_id is None:
                continue
            if group.site_id not in self.by_site:
                sites.add(group.site_id)
            ids = self.ids(group.site_id)
            points.update((group.site_id, r.address) for r in group.readings if r.address not in ids)
        return sites, points


def sync_statements(entry: SiteEntry) -> list[Statement]:
    """Bring a site's catalogue rows, settings and dwellings in line with its description."""
    return [
        Statement(
            "INSERT INTO sites (id, timezone, raw_retention_days) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "timezone = excluded.timezone, raw_retention_days = excluded.raw_retention_days",
            [entry.site_id, entry.timezone, entry.raw_retention_days],
        ),
        Statement(
            "INSERT INTO points (site_id, address, unit, kind, energy_factor_kwh, counter_max) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, address) DO UPDATE SET unit = excluded.unit, "
            "kind = excluded.kind, energy_factor_kwh = excluded.energy_factor_kwh, counter_max = excluded.counter_max",
            many=[(entry.site_id, p.address, p.unit, p.kind, p.energy_factor_kwh, p.counter_max)
                  for p in entry.points],
        ),
        Statement("DELETE FROM dwellings WHERE site_id = ?", [entry.site_id]),
        Statement(
            "INSERT INTO dwellings (site_id, id, meter_point_id) SELECT ?, ?, id FROM points "
            "WHERE site_id = ? AND address = ?",
            many=[(entry.site_id, dwelling, entry.site_id, meter) for dwelling, meter in entry.dwellings.items()],
        ),
    ]


def register_statements(sites: Iterable[str], points: Iterable[tuple[str, str]]) -> list[Statement]:
    """Catalogue rows for sites and points that readings name but no site file described (yet): their
    history is kept, in UTC days, until a description says more."""
    return [
        Statement(
            "INSERT INTO sites (id, timezone, raw_retention_days) VALUES (?, 'UTC', ?) ON CONFLICT (id) DO NOTHING",
            many=[(site, DEFAULT_RAW_RETENTION_DAYS) for site in sorted(sites)],
        ),
        Statement(
            "INSERT INTO points (site_id, address) VALUES (?, ?) ON CONFLICT (site_id, address) DO NOTHING",
            many=sorted(points),
        ),
    ]


@dataclass(slots=True)
class PreparedWrite:
    """A write's rows, in the back end's timestamp form (`stamp`)."""

    # (point_id, ts, value, quality)
    rows: list[tuple[int, Any, float | None, int]] = field(default_factory=list)
    # point_id -> [first ts, last ts] of its rows: the rollup buckets to recompute.
    spans: dict[int, list[Any]] = field(default_factory=dict)
    # Parameters of QUARANTINE_INSERT.
    held: list[tuple[Any, ...]] = field(default_factory=list)
    received: int = 0


def prepare_write(
    groups: Iterable[SiteReadings],
    catalogue: PointCatalogue,
    policy: QuarantinePolicy,
    received_at: datetime,
    stamp: Callable[[datetime], Any],
) -> PreparedWrite:
    """Rows to store and readings to quarantine; every point must be in the catalogue already."""
    out = PreparedWrite()
    rows, spans, held = out.rows, out.spans, out.held
    quality_codes = QUALITY_CODES
    for group in groups:
        arrived = group.received_at or received_at
        out.received += len(group.readings)
        if group.site_id is None:
            keep: list[Reading] = []
            aside = [(r, NO_SITE) for r in group.readings]
        else:
            keep, aside = partition_quarantine(group.readings, arrived, policy)
        ids = catalogue.ids(group.site_id) if group.site_id is not None else {}
        for reading in keep:
            point_id = ids[reading.address]
            ts = stamp(reading.ts)
            rows.append((point_id, ts, numeric_value(reading.value), quality_codes[reading.quality]))
            span = spans.get(point_id)
            if span is None:
                spans[point_id] = [ts, ts]
            elif ts < span[0]:
                span[0] = ts
            elif ts > span[1]:
                span[1] = ts
        arrived_stamp = stamp(arrived)
        held.extend(
            (group.site_id, r.address, stamp(r.ts), numeric_value(r.value), quality_codes[r.quality], r.error,
             arrived_stamp, reason)
            for r, reason in aside
        )
    return out


def shared_series_rows(rows: Iterable[Row]) -> list[SharedSeries]:
    return [SharedSeries(site, address, tuple(sorted(set(claimed.split(",")))), int(count))
            for site, address, claimed, count in rows]


class SqlHistorian(Historian):
    """The historian's shared logic over what each back end provides: run statements in one transaction,
    store a prepared write, apply a migration, and its timestamp form."""

    dialect: Dialect

    def __init__(
        self,
        *,
        quarantine: QuarantinePolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        hourly_retention_days: int | None = DEFAULT_HOURLY_RETENTION_DAYS,
    ) -> None:
        self.quarantine_policy = quarantine or QuarantinePolicy()
        self.clock = clock
        self.hourly_retention_days = hourly_retention_days
        self.catalogue = PointCatalogue()

    # --- what each back end provides -----------------------------------------------------------------

    @abc.abstractmethod
    async def _execute(self, batch: Sequence[Statement]) -> list[list[Row]]:
        """Run statements in one transaction; each one's rows (empty when it returns none)."""

    @abc.abstractmethod
    async def _store(self, prepared: PreparedWrite) -> int:
        """Store a prepared write (readings, rollup spans, quarantine) in one transaction; returns how many
        readings were new."""

    @abc.abstractmethod
    def _stamp(self, ts: datetime) -> Any:
        """A timestamp as this back end stores it."""

    @abc.abstractmethod
    def _unstamp(self, raw: Any) -> datetime: ...

    @abc.abstractmethod
    async def _server_capabilities(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def _apply_migration(self, migration: Migration, sql: list[str]) -> bool:
        """Apply one migration unless already applied, and record it; True when it ran."""

    # --- catalogue -------------------------------------------------------------------------------

    async def _reload_catalogue(self) -> None:
        if await self.schema_version() >= 1:
            (rows,) = await self._execute([Statement(CATALOGUE_SQL)])
            self.catalogue.load(rows)

    async def _ensure_catalogue(self) -> None:
        if not self.catalogue.loaded:
            await self._reload_catalogue()

    async def sync_site(self, site: Any) -> None:
        entry = site if isinstance(site, SiteEntry) else site_entry(site)
        await self._execute(sync_statements(entry))
        await self._reload_catalogue()

    # --- schema ----------------------------------------------------------------------------------

    async def upgrade(self, sites: Sequence[Any] = ()) -> list[int]:
        entries = [s if isinstance(s, SiteEntry) else site_entry(s) for s in sites]
        context = UpgradeContext(
            self.dialect, await self._server_capabilities(),
            claims=tuple((e.site_id, p.address) for e in entries for p in e.points),
        )
        applied = [m.version for m in MIGRATIONS if await self._apply_migration(m, statements(m, context))]
        await self._reload_catalogue()
        return applied

    async def shared_series(self) -> list[SharedSeries]:
        if await self.schema_version() < 4:
            return []
        (rows,) = await self._execute([Statement(SHARED_SERIES_SQL)])
        return shared_series_rows(rows)

    # --- ingest ----------------------------------------------------------------------------------

    async def write(self, batch: Iterable[SiteReadings], *, received_at: datetime | None = None) -> WriteOutcome:
        groups = [g for g in batch if g.readings]
        if not groups:
            return WriteOutcome()
        received_at = received_at or self.clock()
        await self._ensure_catalogue()
        sites, points = self.catalogue.missing(groups)
        if sites or points:
            await self._execute(register_statements(sites, points))
            await self._reload_catalogue()
        prepared = prepare_write(groups, self.catalogue, self.quarantine_policy, received_at, self._stamp)
        stored = await self._store(prepared)
        return WriteOutcome(received=prepared.received, stored=stored, quarantined=len(prepared.held))

    # --- quarantine ------------------------------------------------------------------------------

    async def quarantined(self, limit: int = 1000, *, site_id: str | None = None) -> list[QuarantinedReading]:
        where, params = ("WHERE site_id = ? ", [site_id, limit]) if site_id is not None else ("", [limit])
        (rows,) = await self._execute([Statement(f"{QUARANTINE_SELECT} {where}ORDER BY id LIMIT ?", params)])
        return [
            QuarantinedReading(site, address, self._unstamp(ts), value, QUALITY_BY_CODE[quality],
                               self._unstamp(received), reason)
            for site, address, ts, value, quality, received, reason in rows
        ]
