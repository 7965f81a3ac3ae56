"""The historian on PostgreSQL + TimescaleDB (psycopg 3, async, a connection pool).

Readings go in by binary COPY straight into the hypertable; when a batch holds readings already stored
(a retry after a timeout or a spool replay) the unique key rejects it and the batch goes again through
a temporary staging table with `ON CONFLICT DO NOTHING`, so the common case pays nothing for
idempotence.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
from psycopg import errors as pg_errors

from drivers.base import Quality, Reading
from gridctl.history import rollups
from gridctl.history.base import (
    DEFAULT_HOURLY_RETENTION_DAYS,
    DEFAULT_RAW_RETENTION_DAYS,
    QUALITY_BY_CODE,
    QUALITY_CODES,
    Aggregate,
    EnergyResolution,
    QuarantinePolicy,
    RetentionOutcome,
    utc_now,
)
from gridctl.history.core import QUARANTINE_INSERT, PreparedWrite, Row, SqlHistorian, Statement
from gridctl.history.frames import bucket_frame, energy_frame, energy_index_us, rollup_frame
from gridctl.history.migrations import POSTGRES, Migration
from gridctl.history.pgpool import PgPool
from gridctl.history.sqlite import COUNTER_DELTA
from gridctl.history.timebuckets import bucket_starts_us, day_key_start, from_us, local_midnight, to_us

GOOD = QUALITY_CODES[Quality.GOOD]
COPY_TYPES = ["int4", "timestamptz", "float8", "int2"]
SPAN_TYPES = ["int4", "timestamptz", "timestamptz"]
# The newest reading of a point is nearly always this recent; bounding the search lets TimescaleDB skip
# every older chunk. Points without a reading in the window are looked up again without the bound.
LATEST_WINDOW = timedelta(days=2)
MIGRATION_LOCK = zlib.crc32(b"gridctl.history.migrations")
# Rollups, retention and migrations may take minutes on a large backlog, but not for ever.
MAINTENANCE_TIMEOUT_S = 900.0

_AGGREGATE_SQL = {
    Aggregate.AVG: "avg(value)",
    Aggregate.MIN: "min(value)",
    Aggregate.MAX: "max(value)",
    Aggregate.SUM: "sum(value)",
    Aggregate.COUNT: "count(value)",
    Aggregate.FIRST: "first(value, ts)",
    Aggregate.LAST: "last(value, ts)",
}

_HOURLY_MEASUREMENTS = f"""
INSERT INTO rollup_hourly (point_id, bucket, sample_count, value_avg, value_min, value_max, value_last)
SELECT point_id, time_bucket('1 hour', ts) AS bucket, count(*), avg(value), min(value), max(value), last(value, ts)
FROM readings
WHERE point_id = ANY(%(ids)s) AND ts >= %(lo)s AND ts < %(hi)s AND quality = {GOOD} AND value IS NOT NULL
GROUP BY point_id, bucket
ON CONFLICT (point_id, bucket) DO UPDATE SET
    sample_count = excluded.sample_count, value_avg = excluded.value_avg, value_min = excluded.value_min,
    value_max = excluded.value_max, value_last = excluded.value_last
"""

_HOURLY_ENERGY = f"""
INSERT INTO rollup_hourly (point_id, bucket, energy_kwh)
SELECT d.point_id, time_bucket('1 hour', d.ts - INTERVAL '1 microsecond') AS bucket,
       sum({COUNTER_DELTA}) * coalesce(p.energy_factor_kwh, 1.0)
FROM (
    SELECT point_id, ts, value, lag(value) OVER (PARTITION BY point_id ORDER BY ts) AS prev
    FROM (
        SELECT point_id, ts, value FROM readings
        WHERE point_id = ANY(%(ids)s) AND ts > %(lo)s AND ts <= %(hi)s AND quality = {GOOD} AND value IS NOT NULL
        UNION ALL
        SELECT j.id, x.ts, x.value
        FROM unnest(%(ids)s::int[]) AS j (id)
        CROSS JOIN LATERAL (
            SELECT ts, value FROM readings
            WHERE point_id = j.id AND ts <= %(lo)s AND quality = {GOOD} AND value IS NOT NULL
            ORDER BY ts DESC LIMIT 1
        ) AS x
    ) AS raw
) AS d
JOIN points AS p ON p.id = d.point_id
WHERE d.ts > %(lo)s
GROUP BY d.point_id, bucket, p.energy_factor_kwh
ON CONFLICT (point_id, bucket) DO UPDATE SET energy_kwh = excluded.energy_kwh
"""

_DAILY = """
INSERT INTO rollup_daily
    (point_id, bucket, sample_count, value_avg, value_min, value_max, value_last, energy_kwh)
SELECT h.point_id, m.day_start, sum(h.sample_count),
       sum(h.value_avg * h.sample_count) / nullif(sum(h.sample_count), 0),
       min(h.value_min), max(h.value_max),
       last(h.value_last, h.bucket) FILTER (WHERE h.value_last IS NOT NULL),
       sum(h.energy_kwh)
FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS m (day_start, day_end)
JOIN rollup_hourly AS h ON h.bucket >= m.day_start AND h.bucket < m.day_end
WHERE h.point_id = ANY(%(ids)s)
GROUP BY h.point_id, m.day_start
ON CONFLICT (point_id, bucket) DO UPDATE SET
    sample_count = excluded.sample_count, value_avg = excluded.value_avg, value_min = excluded.value_min,
    value_max = excluded.value_max, value_last = excluded.value_last, energy_kwh = excluded.energy_kwh
"""

_NEXT_READINGS = f"""
SELECT j.id, j.after, x.ts
FROM unnest(%(ids)s::int[], %(after)s::timestamptz[]) AS j (id, after)
CROSS JOIN LATERAL (
    SELECT ts FROM readings
    WHERE point_id = j.id AND ts > j.after AND quality = {GOOD} AND value IS NOT NULL
    ORDER BY ts LIMIT 1
) AS x
"""

_LATEST = """
SELECT j.id, x.ts, x.value, x.quality
FROM unnest(%(ids)s::int[]) AS j (id)
CROSS JOIN LATERAL (
    SELECT ts, value, quality FROM readings WHERE point_id = j.id {bound} ORDER BY ts DESC LIMIT 1
) AS x
"""

class TimescaleHistorian(SqlHistorian):
    kind = "timescale"
    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        *,
        quarantine: QuarantinePolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        hourly_retention_days: int | None = DEFAULT_HOURLY_RETENTION_DAYS,
        pool_min_size: int = 1,
        pool_max_size: int = 4,
        timeout_s: float = 5.0,
        write_timeout_s: float = 8.0,
        query_timeout_s: float = 15.0,
    ) -> None:
        """`timeout_s` bounds getting a connection and a small statement, `write_timeout_s` a write (keep it
        below the recorder's), `query_timeout_s` a query; rollups, retention and migrations get
        `MAINTENANCE_TIMEOUT_S`."""
        super().__init__(quarantine=quarantine, clock=clock, hourly_retention_days=hourly_retention_days)
        self.dsn = dsn
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s
        self.query_timeout_s = query_timeout_s
        self._pool_sizes = (pool_min_size, pool_max_size)
        self._pool: PgPool | None = None

    # --- plumbing --------------------------------------------------------------------------------

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection) -> None:
        # Timestamps come back as UTC-aware datetimes whatever the server's default zone.
        await conn.execute("SET timezone = 'UTC'")

    async def open(self) -> None:
        """Create the pool. Does not wait for the server: a historian opened during an outage works
        as soon as the database is back."""
        if self._pool is not None:
            return
        min_size, max_size = self._pool_sizes
        self._pool = PgPool(self.dsn, min_size=min_size, max_size=max_size, timeout_s=self.timeout_s,
                            configure=self._configure, name="gridctl-history")
        await self._pool.open()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def available(self) -> bool:
        return self._pool is None or self._pool.available

    def _connection(self, timeout_s: float | None = -1.0) -> contextlib.AbstractAsyncContextManager[
            psycopg.AsyncConnection]:
        """A pooled connection whose use is bounded in time (the pool's timeout, or `timeout_s`)."""
        if self._pool is None:
            raise RuntimeError("historian is not open")
        return self._pool.connection(timeout_s)

    async def _execute(self, batch: Sequence[Statement]) -> list[list[Row]]:
        out: list[list[Row]] = []
        async with self._connection(self.write_timeout_s) as conn, conn.transaction(), conn.cursor() as cur:
            for statement in batch:
                sql = statement.sql.replace("?", "%s")
                if statement.many is None:
                    await cur.execute(sql, list(statement.params))
                    out.append(await cur.fetchall() if cur.description else [])
                else:
                    if statement.many:
                        await cur.executemany(sql, statement.many)
                    out.append([])
        return out

    def _stamp(self, ts: datetime) -> datetime:
        return ts

    def _unstamp(self, raw: Any) -> datetime:
        return raw

    # --- schema ----------------------------------------------------------------------------------

    @staticmethod
    async def _version(conn: psycopg.AsyncConnection) -> int:
        row = await (await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")).fetchone()
        if not row[0]:
            return 0
        row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")).fetchone()
        return int(row[0])

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            return await self._version(conn)

    async def _apply_migration(self, migration: Migration, sql: list[str]) -> bool:
        async with self._connection(MAINTENANCE_TIMEOUT_S) as conn, conn.transaction():
            # One upgrader at a time, whichever process runs it.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await (
                await conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", [migration.version])
            ).fetchone()
            if done:
                return False
            for statement in sql:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                               [migration.version, migration.name])
        return True

    async def _server_capabilities(self) -> dict[str, Any]:
        async with self._connection() as conn:
            return await _server_capabilities(conn)

    async def capabilities(self) -> dict[str, object]:
        async with self._connection() as conn:
            server = await _server_capabilities(conn)
            compressed = False
            if server["timescaledb_version"]:
                row = await (
                    await conn.execute(
                        "SELECT coalesce(bool_or(compression_enabled), false) FROM timescaledb_information.hypertables"
                        " WHERE hypertable_name = 'readings'"
                    )
                ).fetchone()
                compressed = bool(row[0])
        licensed = server["license"] == "timescale"
        return {
            "backend": self.kind,
            **server,
            "offers": {"continuous_aggregates": licensed, "compression": licensed},
            # Counter rollups need window functions, which continuous aggregates cannot hold: the
            # historian maintains its rollup tables itself on every edition.
            "uses": {"continuous_aggregates": False, "compression": compressed},
        }

    # --- ingest ----------------------------------------------------------------------------------

    async def _store(self, prepared: PreparedWrite) -> int:
        rows = prepared.rows
        async with self._connection(self.write_timeout_s) as conn:
            try:
                async with conn.transaction():
                    await self._copy(conn, "readings", rows)
                    await self._record_side_tables(conn, prepared)
                return len(rows)
            except pg_errors.UniqueViolation:
                async with conn.transaction():
                    await conn.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS readings_staging (ts timestamptz, point_id integer, "
                        "value double precision, quality smallint) ON COMMIT DELETE ROWS"
                    )
                    await self._copy(conn, "readings_staging", rows)
                    cursor = await conn.execute(
                        "INSERT INTO readings (ts, point_id, value, quality) "
                        "SELECT ts, point_id, value, quality FROM readings_staging ON CONFLICT DO NOTHING"
                    )
                    stored = cursor.rowcount
                    await self._record_side_tables(conn, prepared)
                return stored

    @staticmethod
    async def _copy(conn: psycopg.AsyncConnection, table: str, rows: list[tuple]) -> None:
        async with conn.cursor() as cur:
            async with cur.copy(f"COPY {table} (point_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    await copy.write_row(row)

    @staticmethod
    async def _record_side_tables(conn: psycopg.AsyncConnection, prepared: PreparedWrite) -> None:
        spans = prepared.spans
        if spans:
            # Binary COPY: a group commit marks thousands of points, and arrays cost more per element.
            async with conn.cursor() as cur:
                async with cur.copy("COPY rollup_dirty (point_id, first_ts, last_ts) FROM STDIN (FORMAT BINARY)"
                                    ) as copy:
                    copy.set_types(SPAN_TYPES)
                    for point_id, (first, last) in spans.items():
                        await copy.write_row((point_id, first, last))
        if prepared.held:
            async with conn.cursor() as cur:
                await cur.executemany(QUARANTINE_INSERT.replace("?", "%s"), prepared.held)

    # --- rollups ---------------------------------------------------------------------------------

    async def refresh_rollups(self) -> int:
        # Another process may have synced the site since: kinds and time zones decide the rollups.
        await self._reload_catalogue()
        async with self._connection(MAINTENANCE_TIMEOUT_S) as conn:
            return await self._refresh(conn)

    async def _refresh(self, conn: psycopg.AsyncConnection) -> int:
        max_id = (await (await conn.execute("SELECT max(id) FROM rollup_dirty")).fetchone())[0]
        if max_id is None:
            return 0
        cursor = await conn.execute("SELECT point_id, first_ts, last_ts FROM rollup_dirty WHERE id <= %s", [max_id])
        spans = [(p, to_us(lo), to_us(hi)) for p, lo, hi in await cursor.fetchall()]
        ranges = rollups.dirty_hour_ranges(spans)
        kinds = self.catalogue.kinds
        counters = [(p, hi) for p, rs in ranges.items() if kinds.get(p) == "energy_counter" for _, hi in rs]
        next_reading = {}
        if counters:
            cursor = await conn.execute(
                _NEXT_READINGS, {"ids": [p for p, _ in counters], "after": [from_us(hi) for _, hi in counters]}
            )
            next_reading = {(p, to_us(after)): to_us(ts) for p, after, ts in await cursor.fetchall()}
        ranges = rollups.extend_with_next_readings(ranges, next_reading)
        recomputed = 0
        for job in rollups.hour_jobs(ranges):
            params = {"ids": list(job.point_ids), "lo": from_us(job.start_us), "hi": from_us(job.end_us)}
            counter_ids = [p for p in job.point_ids if self.catalogue.kinds.get(p) == "energy_counter"]
            async with conn.transaction():
                # A job spans up to a week of its points' readings: sort them in memory.
                await conn.execute("SET LOCAL work_mem = '256MB'")
                await conn.execute(_HOURLY_MEASUREMENTS, params)
                if counter_ids:
                    await conn.execute(_HOURLY_ENERGY, dict(params, ids=counter_ids))
            recomputed += len(job.point_ids) * (job.end_us - job.start_us) // 3_600_000_000
        for day_job in rollups.day_jobs(ranges, self.catalogue.timezones):
            tz = ZoneInfo(day_job.timezone)
            starts = [from_us(us) for us in day_job.day_starts_us]
            ends = [local_midnight(s.astimezone(tz).date() + timedelta(days=1), tz) for s in starts]
            async with conn.transaction():
                await conn.execute(_DAILY, {"starts": starts, "ends": ends, "ids": list(day_job.point_ids)})
        await conn.execute("DELETE FROM rollup_dirty WHERE id <= %s", [max_id])
        return recomputed

    # --- queries ---------------------------------------------------------------------------------

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
        addresses = list(addresses)
        aggregate = Aggregate(aggregate)
        tz = ZoneInfo(timezone) if timezone else None
        index = bucket_starts_us(start, end, bucket, tz)
        rows: list[tuple[int, int, float | None]] = []
        await self._ensure_catalogue()
        ids = self.catalogue.ids(site_id)
        by_id = self.catalogue.ids_of(site_id, addresses)
        async with self._connection(self.query_timeout_s) as conn:
            if by_id and len(index):
                local_days = tz is not None and bucket % timedelta(days=1) == timedelta(0)
                if local_days:
                    key_sql = "floor(extract(epoch FROM ts AT TIME ZONE %(tz)s) / %(width)s)::bigint"
                else:
                    key_sql = (
                        "(extract(epoch FROM time_bucket(%(bucket)s, ts, origin => '1970-01-01 00:00:00+00'))"
                        " * 1000000)::bigint"
                    )
                cursor = await conn.execute(
                    f"SELECT point_id, {key_sql} AS k, {_AGGREGATE_SQL[aggregate]} FROM readings "
                    "WHERE point_id = ANY(%(ids)s) AND ts >= %(start)s AND ts < %(end)s "
                    f"AND quality = {GOOD} AND value IS NOT NULL GROUP BY point_id, k",
                    {"ids": list(by_id), "start": start, "end": end, "bucket": bucket, "tz": timezone,
                     "width": bucket.days * 86400},
                )
                starts: dict[int, int] = {}
                for point_id, key, value in await cursor.fetchall():
                    if key not in starts:
                        starts[key] = to_us(day_key_start(key, bucket.days, tz)) if local_days else key  # type: ignore[arg-type]
                    rows.append((point_id, starts[key], value))
        return bucket_frame(rows, [ids.get(a) for a in addresses], addresses, index)

    async def rollups(
        self, site_id: str, addresses: Sequence[str], start: datetime, end: datetime,
        resolution: EnergyResolution | str = "hour",
    ) -> pd.DataFrame:
        table = "rollup_daily" if EnergyResolution(resolution) is EnergyResolution.DAY else "rollup_hourly"
        await self._ensure_catalogue()
        by_id = self.catalogue.ids_of(site_id, addresses)
        async with self._connection(self.query_timeout_s) as conn:
            cursor = await conn.execute(
                "SELECT point_id, (extract(epoch FROM bucket) * 1000000)::bigint, sample_count, value_avg, "
                f"value_min, value_max, value_last, energy_kwh FROM {table} "
                "WHERE point_id = ANY(%s) AND bucket >= %s AND bucket < %s",
                [list(by_id), start, end],
            )
            rows = [(by_id[row[0]], *row[1:]) for row in await cursor.fetchall()]
        return rollup_frame(rows)

    async def latest(self, site_id: str, addresses: Sequence[str]) -> dict[str, Reading]:
        out: dict[str, Reading] = {}
        await self._ensure_catalogue()
        by_id = self.catalogue.ids_of(site_id, addresses)
        if not by_id:
            return out
        async with self._connection(self.query_timeout_s) as conn:
            cursor = await conn.execute(
                _LATEST.format(bound="AND ts > %(since)s"), {"ids": list(by_id), "since": self.clock() - LATEST_WINDOW}
            )
            found = await cursor.fetchall()
            missing = set(by_id) - {row[0] for row in found}
            if missing:
                cursor = await conn.execute(_LATEST.format(bound=""), {"ids": sorted(missing)})
                found += await cursor.fetchall()
        for point_id, ts, value, quality in found:
            address = by_id[point_id]
            out[address] = Reading(address, ts, value, QUALITY_BY_CODE[quality])
        return out

    async def dwelling_energy(
        self,
        site_id: str,
        start: date,
        end: date,
        resolution: EnergyResolution | str = EnergyResolution.DAY,
        dwellings: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        resolution = EnergyResolution(resolution)
        async with self._connection(self.query_timeout_s) as conn:
            site = await (
                await conn.execute(
                    "SELECT timezone, array(SELECT id FROM dwellings WHERE site_id = sites.id ORDER BY id), "
                    "array(SELECT meter_point_id FROM dwellings WHERE site_id = sites.id ORDER BY id) "
                    "FROM sites WHERE id = %s",
                    [site_id],
                )
            ).fetchone()
            if site is None:
                raise KeyError(f"unknown site {site_id!r}")
            tz = ZoneInfo(site[0])
            meter_of = dict(zip(site[1], site[2], strict=True))
            wanted = list(dwellings) if dwellings is not None else list(site[1])
            meters = [meter_of.get(d) for d in wanted]
            hourly = resolution is EnergyResolution.HOUR
            table = "rollup_hourly" if hourly else "rollup_daily"
            index = energy_index_us(start, end, EnergyResolution.HOUR if hourly else EnergyResolution.DAY, tz)
            rows: list[tuple[int, int, float | None]] = []
            if len(index):
                cursor = await conn.execute(
                    "SELECT point_id, (extract(epoch FROM bucket) * 1000000)::bigint, energy_kwh "
                    f"FROM {table} WHERE point_id = ANY(%s) AND bucket >= %s AND bucket < %s",
                    [sorted({m for m in meters if m is not None}), from_us(int(index[0])), local_midnight(end, tz)],
                )
                rows = await cursor.fetchall()
        return energy_frame(rows, meters, wanted, start, end, resolution, tz)

    # --- retention and quarantine ----------------------------------------------------------------

    async def apply_retention(self, now: datetime | None = None) -> RetentionOutcome:
        now = now or self.clock()
        outcome = RetentionOutcome()
        await self._ensure_catalogue()
        async with self._connection(MAINTENANCE_TIMEOUT_S) as conn:
            # Roll up what is about to go.
            await self._refresh(conn)
            cursor = await conn.execute("SELECT id, raw_retention_days FROM sites")
            sites = await cursor.fetchall()
            for site_id, days in sites:
                outcome.raw_cutoffs[site_id] = now - timedelta(days=days)
            longest = max([DEFAULT_RAW_RETENTION_DAYS, *(days for _, days in sites)])
            # Whole chunks past every site's retention go at once; shorter retentions delete rows.
            cursor = await conn.execute(
                "SELECT count(*) FROM drop_chunks('readings', older_than => %s::timestamptz)",
                [now - timedelta(days=longest)],
            )
            outcome.chunks_dropped = (await cursor.fetchone())[0]
            async with conn.transaction():
                for site_id, days in sites:
                    if days < longest:
                        cursor = await conn.execute(
                            "DELETE FROM readings WHERE point_id IN (SELECT id FROM points WHERE site_id = %s) "
                            "AND ts < %s",
                            [site_id, now - timedelta(days=days)],
                        )
                        outcome.rows_deleted += cursor.rowcount
                if self.hourly_retention_days is not None:
                    cursor = await conn.execute(
                        "DELETE FROM rollup_hourly WHERE bucket < %s",
                        [now - timedelta(days=self.hourly_retention_days)],
                    )
                    outcome.hourly_rows_deleted = cursor.rowcount
        return outcome


async def _server_capabilities(conn: psycopg.AsyncConnection) -> dict[str, Any]:
    version = (await (await conn.execute("SHOW server_version")).fetchone())[0]
    row = await (await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).fetchone()
    license_name = None
    if row is not None or await _extension_available(conn):
        # The setting exists once the library is loaded (shared_preload_libraries).
        with contextlib.suppress(psycopg.errors.UndefinedObject):
            license_name = (await (await conn.execute("SHOW timescaledb.license")).fetchone())[0]
    return {"server_version": version, "timescaledb_version": row[0] if row else None, "license": license_name}


async def _extension_available(conn: psycopg.AsyncConnection) -> bool:
    row = await (
        await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).fetchone()
    return row is not None
