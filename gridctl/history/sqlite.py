"""The embedded historian: one SQLite file in WAL mode, no server needed.

Readings live in a `WITHOUT ROWID` table keyed (point_id, ts) so each point's history is stored
contiguously; timestamps are integer microseconds (UTC). The blocking sqlite3 calls run in a worker
thread, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd

from drivers.base import Quality, Reading
from gridctl.history import rollups
from gridctl.history.base import (
    DEFAULT_HOURLY_RETENTION_DAYS,
    QUALITY_BY_CODE,
    QUALITY_CODES,
    Aggregate,
    EnergyResolution,
    HistorianUnavailable,
    QuarantinePolicy,
    RetentionOutcome,
    utc_now,
)
from gridctl.history.core import CATALOGUE_SQL, QUARANTINE_INSERT, PreparedWrite, Row, SqlHistorian, Statement
from gridctl.history.frames import bucket_frame, energy_frame, energy_index_us, rollup_frame
from gridctl.history.migrations import SQLITE, Migration
from gridctl.history.timebuckets import (
    DAY_US,
    HOUR_US,
    MICROSECOND,
    bucket_starts_us,
    day_key_start,
    from_us,
    local_midnight,
    offset_transitions,
    to_us,
)

T = TypeVar("T")


GOOD = QUALITY_CODES[Quality.GOOD]

_AGGREGATE_SQL = {
    Aggregate.AVG: "avg(value)",
    Aggregate.MIN: "min(value)",
    Aggregate.MAX: "max(value)",
    Aggregate.SUM: "sum(value)",
    Aggregate.COUNT: "count(value)",
    # With a single min()/max() aggregate SQLite takes the bare column from that row.
    Aggregate.FIRST: "value, min(ts)",
    Aggregate.LAST: "value, max(ts)",
}

# The last value comes from one index seek per bucket: cheaper than a window over every reading.
_HOURLY_MEASUREMENTS = f"""
INSERT INTO rollup_hourly (point_id, bucket, sample_count, value_avg, value_min, value_max, value_last)
SELECT g.point_id, g.bucket, g.n, g.mean, g.low, g.high,
       (SELECT x.value FROM readings AS x
        WHERE x.point_id = g.point_id AND x.ts >= g.bucket AND x.ts < g.bucket + {HOUR_US}
          AND x.quality = {GOOD} AND x.value IS NOT NULL
        ORDER BY x.ts DESC LIMIT 1)
FROM (
    SELECT point_id, ts / {HOUR_US} * {HOUR_US} AS bucket, count(*) AS n, avg(value) AS mean,
           min(value) AS low, max(value) AS high
    FROM readings
    WHERE point_id IN (SELECT value FROM json_each(:ids)) AND ts >= :lo AND ts < :hi
      AND quality = {GOOD} AND value IS NOT NULL
    GROUP BY point_id, bucket
) AS g
WHERE true
ON CONFLICT (point_id, bucket) DO UPDATE SET
    sample_count = excluded.sample_count, value_avg = excluded.value_avg, value_min = excluded.value_min,
    value_max = excluded.value_max, value_last = excluded.value_last
"""

# Consumption between consecutive good readings (as `counter_rise` in rollups.py): a drop from the
# upper half of the counter's range into the lower half is a wrap-around (it passed its maximum); a drop
# below half the previous value is a reset (meter replaced or cleared), after which the new value is
# what was consumed since; a smaller step back is the same count read back with less precision (a
# float32 register, a coarser scale), and nothing was consumed.
COUNTER_DELTA = """CASE
    WHEN prev IS NULL THEN NULL
    WHEN value >= prev THEN value - prev
    WHEN counter_max IS NOT NULL AND prev > counter_max / 2 AND value < counter_max / 2
        THEN counter_max - prev + value
    WHEN value < prev / 2 THEN value
    ELSE 0
END"""

_HOURLY_ENERGY = f"""
INSERT INTO rollup_hourly (point_id, bucket, energy_kwh)
SELECT d.point_id, (d.ts - 1) / {HOUR_US} * {HOUR_US} AS bucket,
       sum({COUNTER_DELTA}) * coalesce(p.energy_factor_kwh, 1.0)
FROM (
    SELECT point_id, ts, value, lag(value) OVER (PARTITION BY point_id ORDER BY ts) AS prev
    FROM (
        SELECT point_id, ts, value FROM readings
        WHERE point_id IN (SELECT value FROM json_each(:ids)) AND ts > :lo AND ts <= :hi
          AND quality = {GOOD} AND value IS NOT NULL
        UNION ALL
        SELECT r.point_id, r.ts, r.value
        FROM json_each(:ids) AS j
        JOIN readings AS r ON r.point_id = j.value AND r.ts = (
            SELECT x.ts FROM readings AS x
            WHERE x.point_id = j.value AND x.ts <= :lo AND x.quality = {GOOD} AND x.value IS NOT NULL
            ORDER BY x.ts DESC LIMIT 1)
    )
) AS d
JOIN points AS p ON p.id = d.point_id
WHERE d.ts > :lo
GROUP BY d.point_id, bucket
ON CONFLICT (point_id, bucket) DO UPDATE SET energy_kwh = excluded.energy_kwh
"""

_DAILY = """
INSERT INTO rollup_daily
    (point_id, bucket, sample_count, value_avg, value_min, value_max, value_last, energy_kwh)
SELECT h.point_id, m.day_start, sum(h.sample_count),
       sum(h.value_avg * h.sample_count) / nullif(sum(h.sample_count), 0),
       min(h.value_min), max(h.value_max),
       (SELECT x.value_last FROM rollup_hourly AS x
        WHERE x.point_id = h.point_id AND x.bucket >= m.day_start AND x.bucket < m.day_end
          AND x.value_last IS NOT NULL
        ORDER BY x.bucket DESC LIMIT 1),
       sum(h.energy_kwh)
FROM temp.day_map AS m
JOIN rollup_hourly AS h ON h.bucket >= m.day_start AND h.bucket < m.day_end
WHERE h.point_id IN (SELECT value FROM json_each(:ids))
GROUP BY h.point_id, m.day_start
ON CONFLICT (point_id, bucket) DO UPDATE SET
    sample_count = excluded.sample_count, value_avg = excluded.value_avg, value_min = excluded.value_min,
    value_max = excluded.value_max, value_last = excluded.value_last, energy_kwh = excluded.energy_kwh
"""


def _offset_sql(tz: ZoneInfo, start: datetime, end: datetime) -> str:
    """An SQL expression of `ts` giving the zone's UTC offset in microseconds at that instant."""
    transitions = offset_transitions(tz, start, end)
    if len(transitions) == 1:
        return str(transitions[0][1])
    cases = " ".join(f"WHEN ts < {to_us(at)} THEN {previous}" for (at, _), (_, previous) in
                     zip(transitions[1:], transitions[:-1], strict=True))
    return f"(CASE {cases} ELSE {transitions[-1][1]} END)"


class SQLiteHistorian(SqlHistorian):
    kind = "sqlite"
    dialect = SQLITE

    def __init__(
        self,
        path: str | Path,
        *,
        quarantine: QuarantinePolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        hourly_retention_days: int | None = DEFAULT_HOURLY_RETENTION_DAYS,
    ) -> None:
        super().__init__(quarantine=quarantine, clock=clock, hourly_retention_days=hourly_retention_days)
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    # --- plumbing --------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be interrupted: keep the connection to it until it is done, so that
                # no other call starts a transaction on the connection meanwhile.
                await asyncio.wait([work])
                raise
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "unable to open" in str(exc):
                    raise HistorianUnavailable(str(exc)) from exc
                raise

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("historian is not open")
        return self._conn

    def _open_sync(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL with synchronous NORMAL survives a crash of the process; only a power loss may lose the
        # last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -65536")
        self._conn = conn

    async def open(self) -> None:
        if self._conn is None:
            try:
                await self._run(self._open_sync)
            except sqlite3.Error as exc:
                raise HistorianUnavailable(f"cannot open {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _execute_sync(self, batch: Sequence[Statement]) -> list[list[Row]]:
        out: list[list[Row]] = []
        with self._transaction() as conn:
            for statement in batch:
                if statement.many is None:
                    out.append(conn.execute(statement.sql, list(statement.params)).fetchall())
                else:
                    if statement.many:
                        conn.executemany(statement.sql, statement.many)
                    out.append([])
        return out

    async def _execute(self, batch: Sequence[Statement]) -> list[list[Row]]:
        return await self._run(self._execute_sync, batch)

    def _stamp(self, ts: datetime) -> int:
        return to_us(ts)

    def _unstamp(self, raw: Any) -> datetime:
        return from_us(raw)

    def _load_catalogue_sync(self) -> None:
        if self._version_sync() >= 1:
            self.catalogue.load(self.conn.execute(CATALOGUE_SQL))

    # --- schema ----------------------------------------------------------------------------------

    def _version_sync(self) -> int:
        exists = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not exists:
            return 0
        return self.conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]

    async def schema_version(self) -> int:
        return await self._run(self._version_sync)

    def _apply_sync(self, migration: Migration, sql: list[str]) -> bool:
        conn = self.conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", [migration.version]).fetchone():
            return False

        # Foreign keys cannot be switched inside a transaction: a rebuild turns them off around it.
        if migration.rebuilds_tables:
            conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with self._transaction():
                # Another process may have applied it meanwhile.
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", [migration.version]).fetchone():
                    return False
                for statement in sql:
                    conn.execute(statement)
                if migration.rebuilds_tables:
                    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration {migration.version} would break foreign keys: {broken[:5]}")
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                             [migration.version, migration.name, utc_now().isoformat()])
        finally:
            if migration.rebuilds_tables:
                conn.execute("PRAGMA foreign_keys = ON")
        return True

    async def _apply_migration(self, migration: Migration, sql: list[str]) -> bool:
        return await self._run(self._apply_sync, migration, sql)

    async def _server_capabilities(self) -> dict[str, Any]:
        return await self.capabilities()

    async def capabilities(self) -> dict[str, object]:
        return {
            "backend": self.kind,
            "server_version": sqlite3.sqlite_version,
            "license": None,
            "offers": {"continuous_aggregates": False, "compression": False},
            "uses": {"continuous_aggregates": False, "compression": False},
        }

    # --- ingest ----------------------------------------------------------------------------------

    def _store_sync(self, prepared: PreparedWrite) -> int:
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO readings (point_id, ts, value, quality) VALUES (?, ?, ?, ?)",
                             prepared.rows)
            stored = conn.total_changes - before
            conn.executemany(
                "INSERT INTO rollup_dirty (point_id, first_ts, last_ts) VALUES (?, ?, ?)",
                [(point_id, lo, hi) for point_id, (lo, hi) in prepared.spans.items()],
            )
            conn.executemany(QUARANTINE_INSERT, prepared.held)
        return stored

    async def _store(self, prepared: PreparedWrite) -> int:
        return await self._run(self._store_sync, prepared)

    # --- rollups ---------------------------------------------------------------------------------

    def _refresh_sync(self) -> int:
        conn = self.conn
        # Another process may have synced the site since: kinds and time zones decide the rollups.
        self._load_catalogue_sync()
        max_id = conn.execute("SELECT max(id) FROM rollup_dirty").fetchone()[0]
        if max_id is None:
            return 0
        spans = conn.execute("SELECT point_id, first_ts, last_ts FROM rollup_dirty WHERE id <= ?", [max_id])
        ranges = rollups.dirty_hour_ranges(spans.fetchall())
        next_reading = {}
        for point_id, point_ranges in ranges.items():
            if self.catalogue.kinds.get(point_id) != "energy_counter":
                continue
            for _lo, hi in point_ranges:
                row = conn.execute(
                    f"SELECT ts FROM readings WHERE point_id = ? AND ts > ? AND quality = {GOOD} "
                    "AND value IS NOT NULL ORDER BY ts LIMIT 1",
                    [point_id, hi],
                ).fetchone()
                if row:
                    next_reading[(point_id, hi)] = row[0]
        ranges = rollups.extend_with_next_readings(ranges, next_reading)
        recomputed = 0
        for job in rollups.hour_jobs(ranges):
            counters = [p for p in job.point_ids if self.catalogue.kinds.get(p) == "energy_counter"]
            with self._transaction():
                params = {"ids": json.dumps(job.point_ids), "lo": job.start_us, "hi": job.end_us}
                conn.execute(_HOURLY_MEASUREMENTS, params)
                if counters:
                    conn.execute(_HOURLY_ENERGY, dict(params, ids=json.dumps(counters)))
            recomputed += len(job.point_ids) * (job.end_us - job.start_us) // HOUR_US
        for day_job in rollups.day_jobs(ranges, self.catalogue.timezones):
            tz = ZoneInfo(day_job.timezone)
            day_map = []
            for start_us in day_job.day_starts_us:
                day = from_us(start_us).astimezone(tz).date()
                day_map.append((start_us, to_us(local_midnight(day + timedelta(days=1), tz))))
            with self._transaction():
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS day_map (day_start INTEGER PRIMARY KEY, day_end INTEGER)")
                conn.execute("DELETE FROM temp.day_map")
                conn.executemany("INSERT INTO temp.day_map VALUES (?, ?)", day_map)
                conn.execute(_DAILY, {"ids": json.dumps(day_job.point_ids)})
        conn.execute("DELETE FROM rollup_dirty WHERE id <= ?", [max_id])
        return recomputed

    async def refresh_rollups(self) -> int:
        return await self._run(self._refresh_sync)

    # --- queries ---------------------------------------------------------------------------------

    def _query_sync(
        self, site_id: str, addresses: Sequence[str], start: datetime, end: datetime, bucket: timedelta,
        aggregate: Aggregate, timezone: str | None,
    ) -> pd.DataFrame:
        tz = ZoneInfo(timezone) if timezone else None
        index = bucket_starts_us(start, end, bucket, tz)
        ids = self.catalogue.ids(site_id)
        by_id = self.catalogue.ids_of(site_id, addresses)
        rows: list[tuple[int, int, float | None]] = []
        if by_id and len(index):
            if tz is not None and bucket % timedelta(days=1) == timedelta(0):
                width = bucket.days * DAY_US
                key_sql = f"(ts + {_offset_sql(tz, start, end)}) / {width}"

                def key_start(key: int) -> int:
                    return to_us(day_key_start(key, bucket.days, tz))
            else:
                width = bucket // MICROSECOND
                key_sql = f"ts / {width}"

                def key_start(key: int) -> int:
                    return key * width

            sql = (
                f"SELECT point_id, {key_sql} AS k, {_AGGREGATE_SQL[aggregate]} FROM readings "
                "WHERE point_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ? "
                f"AND quality = {GOOD} AND value IS NOT NULL GROUP BY point_id, k"
            )
            starts: dict[int, int] = {}
            for point_id, key, value, *_ in self.conn.execute(sql, [json.dumps(list(by_id)), to_us(start), to_us(end)]):
                if key not in starts:
                    starts[key] = key_start(key)
                rows.append((point_id, starts[key], value))
        return bucket_frame(rows, [ids.get(a) for a in addresses], list(addresses), index)

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
        await self._ensure_catalogue()
        return await self._run(self._query_sync, site_id, list(addresses), start, end, bucket, Aggregate(aggregate),
                               timezone)

    def _rollups_sync(
        self, site_id: str, addresses: Sequence[str], start: datetime, end: datetime, resolution: EnergyResolution
    ) -> pd.DataFrame:
        by_id = self.catalogue.ids_of(site_id, addresses)
        table = "rollup_daily" if resolution is EnergyResolution.DAY else "rollup_hourly"
        rows = [
            (by_id[row[0]], *row[1:])
            for row in self.conn.execute(
                "SELECT point_id, bucket, sample_count, value_avg, value_min, value_max, value_last, energy_kwh "
                f"FROM {table} WHERE point_id IN (SELECT value FROM json_each(?)) AND bucket >= ? AND bucket < ?",
                [json.dumps(list(by_id)), to_us(start), to_us(end)],
            )
        ]
        return rollup_frame(rows)

    async def rollups(
        self, site_id: str, addresses: Sequence[str], start: datetime, end: datetime,
        resolution: EnergyResolution | str = "hour",
    ) -> pd.DataFrame:
        await self._ensure_catalogue()
        return await self._run(self._rollups_sync, site_id, list(addresses), start, end, EnergyResolution(resolution))

    def _latest_sync(self, site_id: str, addresses: Sequence[str]) -> dict[str, Reading]:
        by_id = self.catalogue.ids_of(site_id, addresses)
        rows = self.conn.execute(
            "SELECT r.point_id, r.ts, r.value, r.quality FROM json_each(?) AS j JOIN readings AS r "
            "ON r.point_id = j.value AND r.ts = (SELECT max(ts) FROM readings AS x WHERE x.point_id = j.value)",
            [json.dumps(list(by_id))],
        )
        out: dict[str, Reading] = {}
        for point_id, ts, value, quality in rows:
            address = by_id[point_id]
            out[address] = Reading(address, from_us(ts), value, QUALITY_BY_CODE[quality])
        return out

    async def latest(self, site_id: str, addresses: Sequence[str]) -> dict[str, Reading]:
        await self._ensure_catalogue()
        return await self._run(self._latest_sync, site_id, list(addresses))

    def _energy_sync(
        self, site_id: str, start: date, end: date, resolution: EnergyResolution, dwellings: Sequence[str] | None
    ) -> pd.DataFrame:
        site = self.conn.execute("SELECT timezone FROM sites WHERE id = ?", [site_id]).fetchone()
        if site is None:
            raise KeyError(f"unknown site {site_id!r}")
        tz = ZoneInfo(site[0])
        meter_of = dict(
            self.conn.execute("SELECT id, meter_point_id FROM dwellings WHERE site_id = ? ORDER BY id", [site_id])
        )
        wanted = list(dwellings) if dwellings is not None else list(meter_of)
        meters = [meter_of.get(d) for d in wanted]
        table = "rollup_hourly" if resolution is EnergyResolution.HOUR else "rollup_daily"
        hourly = resolution is EnergyResolution.HOUR
        index = energy_index_us(start, end, EnergyResolution.HOUR if hourly else EnergyResolution.DAY, tz)
        rows = []
        if len(index):
            rows = self.conn.execute(
                f"SELECT point_id, bucket, energy_kwh FROM {table} "
                "WHERE point_id IN (SELECT value FROM json_each(?)) AND bucket >= ? AND bucket < ?",
                [json.dumps(sorted({m for m in meters if m is not None})), int(index[0]),
                 to_us(local_midnight(end, tz))],
            ).fetchall()
        return energy_frame(rows, meters, wanted, start, end, resolution, tz)

    async def dwelling_energy(
        self,
        site_id: str,
        start: date,
        end: date,
        resolution: EnergyResolution | str = EnergyResolution.DAY,
        dwellings: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        return await self._run(self._energy_sync, site_id, start, end, EnergyResolution(resolution), dwellings)

    # --- retention and quarantine ----------------------------------------------------------------

    def _retention_sync(self, now: datetime) -> RetentionOutcome:
        self._refresh_sync()
        outcome = RetentionOutcome()
        with self._transaction() as conn:
            sites = conn.execute("SELECT id, raw_retention_days FROM sites").fetchall()
            for site_id, days in sites:
                cutoff = now - timedelta(days=days)
                outcome.raw_cutoffs[site_id] = cutoff
                cursor = conn.execute(
                    "DELETE FROM readings WHERE point_id IN (SELECT id FROM points WHERE site_id = ?) AND ts < ?",
                    [site_id, to_us(cutoff)],
                )
                outcome.rows_deleted += cursor.rowcount
            if self.hourly_retention_days is not None:
                cursor = conn.execute(
                    "DELETE FROM rollup_hourly WHERE bucket < ?",
                    [to_us(now - timedelta(days=self.hourly_retention_days))],
                )
                outcome.hourly_rows_deleted = cursor.rowcount
        return outcome

    async def apply_retention(self, now: datetime | None = None) -> RetentionOutcome:
        return await self._run(self._retention_sync, now or self.clock())
