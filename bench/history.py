"""Historian benchmark: ingest rate against a raw binary COPY, dwelling energy over a year of 1-minute
data and latest values of 1,000 points, on TimescaleDB and on SQLite.

    .venv/bin/python bench/history.py [--days 365] [--meters 200] [--ingest 2000000]

Starts a throwaway PostgreSQL + TimescaleDB cluster (the test suite's cluster class) and a SQLite file
in a temp dir. The year of data is generated inside the databases (numpy-built binary COPY on
TimescaleDB, one INSERT ... SELECT on SQLite) and rolled up by the historian's own refresh; the SQLite
build runs in a second process while TimescaleDB's runs here. The last line printed is one JSON object.

The full year is about 106 M readings per back end: building it dominates the run (about 20 minutes on
two busy cores, `build` in the output says how long each part took). `--days 30` gives the same
measurements over a month in a few minutes; the query figures depend on the rollup tables, which grow
with days x meters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import queue as queue_module
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from pgcluster import PgCluster  # noqa: E402

from drivers.base import Quality, Reading  # noqa: E402
from gridctl.history import SQLiteHistorian  # noqa: E402
from gridctl.history.base import CatalogueEntry, SiteEntry, SiteReadings  # noqa: E402
from gridctl.history.timebuckets import to_us  # noqa: E402
from gridctl.history.timescale import TimescaleHistorian  # noqa: E402

SITE_ID = "bench"
TIMEZONE = "Europe/Paris"
SENSORS = 800  # measurement points beside the meters, for the 1,000-point latest-value query
INGEST_POINTS = 500
INGEST_SITES = ("ingest-north", "ingest-south", "ingest-east")
BATCH = 100_000
SERVER_SETTINGS = {"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}
BUILD_SETTINGS = {"wal_level": "minimal", "max_wal_senders": "0"}
PG_EPOCH_US = to_us(datetime(2000, 1, 1, tzinfo=UTC))
COPY_ROW = np.dtype([
    ("fields", ">i2"), ("ts_len", ">i4"), ("ts", ">i8"), ("point_len", ">i4"), ("point_id", ">i4"),
    ("value_len", ">i4"), ("value", ">f8"), ("quality_len", ">i4"), ("quality", ">i2"),
])
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def meter_address(k: int) -> str:
    return f"bench-meters/d{k:03d}_energy"


def site_entry(meters: int) -> SiteEntry:
    points = [CatalogueEntry(meter_address(k), SITE_ID, "kWh", "energy_counter", 1.0, None) for k in range(meters)]
    points += [CatalogueEntry(f"bench-sensors/p{k:03d}", SITE_ID, "kW", "measurement") for k in range(SENSORS)]
    return SiteEntry(SITE_ID, TIMEZONE, 400, tuple(points), {f"d{k:03d}": meter_address(k) for k in range(meters)})


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    # The minimum shows what the machine gives when nothing else competes for its cores.
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2),
            "min_ms": round(ordered[0] * 1000, 2)}


# Counter k reads (0.5 + 0.01 k) kWh per hour plus a small sawtooth that never makes it go backwards.
COUNTER_SQL = "(0.5 + {k} * 0.01) * {m} / 60.0 + ({m} % 7) * 0.001"


def counter_values(k: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (0.5 + k * 0.01) * m / 60.0 + (m % 7) * 0.001


# --------------------------------------------------------------------------- data generation


def copy_rows(conn: psycopg.Connection, ts_us: np.ndarray, point_ids: np.ndarray, values: np.ndarray) -> None:
    rows = np.empty(len(ts_us), dtype=COPY_ROW)
    rows["fields"], rows["ts_len"], rows["point_len"], rows["value_len"], rows["quality_len"] = 4, 8, 4, 8, 2
    rows["ts"] = ts_us - PG_EPOCH_US
    rows["point_id"] = point_ids
    rows["value"] = values
    rows["quality"] = 0
    statement = "COPY readings (ts, point_id, value, quality) FROM STDIN (FORMAT BINARY)"
    with conn.cursor() as cur, cur.copy(statement) as cp:
        cp.write(COPY_HEADER)
        data = rows.tobytes()
        for offset in range(0, len(data), 1 << 24):
            cp.write(data[offset : offset + (1 << 24)])
        cp.write(COPY_TRAILER)


def build_timescale(dsn: str, meter_ids: list[int], sensor_ids: list[int], start_us: int, minutes: int) -> None:
    """A year of 1-minute meter readings and a day of sensor readings, week by week, two streams."""
    meter_ids_arr = np.array(meter_ids, dtype=np.int32)
    week = 7 * 1440
    pieces = list(range(0, minutes, week))

    def stream(offsets: list[int]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for offset in offsets:
                m = np.arange(offset, min(offset + week, minutes), dtype=np.int64)
                k = np.repeat(np.arange(len(meter_ids_arr)), len(m))
                mm = np.tile(m, len(meter_ids_arr))
                copy_rows(conn, start_us + mm * 60_000_000, meter_ids_arr[k], counter_values(k, mm))

    threads = [threading.Thread(target=stream, args=(pieces[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(dsn, autocommit=True) as conn:
        m = np.arange(minutes - 1440, minutes, dtype=np.int64)
        ids = np.repeat(np.array(sensor_ids, dtype=np.int32), len(m))
        mm = np.tile(m, len(sensor_ids))
        copy_rows(conn, start_us + mm * 60_000_000, ids, np.sin(mm / 90.0) * 10 + ids % 17)
        conn.execute(
            "INSERT INTO rollup_dirty (point_id, first_ts, last_ts) SELECT id, %s, %s FROM points",
            [_from_us(start_us), _from_us(start_us + (minutes - 1) * 60_000_000)],
        )
        conn.execute("ANALYZE readings")


def build_sqlite(path: str, meters: int, start_us: int, minutes: int, result: dict) -> None:
    """The same data in the SQLite historian (run in its own process), rolled up by the historian."""
    import sqlite3

    async def setup() -> None:
        historian = SQLiteHistorian(path)
        await historian.open()
        await historian.upgrade()
        await historian.sync_site(site_entry(meters))
        await historian.close()

    asyncio.run(setup())
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -262144")
    conn.execute("CREATE TEMP TABLE minutes (m INTEGER PRIMARY KEY)")
    conn.execute(
        "WITH RECURSIVE r(m) AS (SELECT 0 UNION ALL SELECT m + 1 FROM r WHERE m + 1 < ?) "
        "INSERT INTO temp.minutes SELECT m FROM r",
        [minutes],
    )
    conn.execute("CREATE TEMP TABLE meters (id INTEGER PRIMARY KEY, k INTEGER)")
    conn.execute(
        "INSERT INTO temp.meters SELECT id, CAST(substr(address, 15, 3) AS INTEGER) FROM points "
        "WHERE address LIKE 'bench-meters/%' ORDER BY id"
    )
    conn.execute("BEGIN")
    # CROSS JOIN keeps meters as the outer loop: rows arrive in primary-key order.
    conn.execute(
        f"INSERT INTO readings (point_id, ts, value, quality) SELECT p.id, {start_us} + n.m * 60000000, "
        f"{COUNTER_SQL.format(k='p.k', m='n.m')}, 0 FROM temp.meters AS p CROSS JOIN temp.minutes AS n"
    )
    conn.execute(
        f"INSERT INTO readings (point_id, ts, value, quality) SELECT p.id, {start_us} + n.m * 60000000, "
        "sin(n.m / 90.0) * 10 + p.id % 17, 0 FROM points AS p CROSS JOIN temp.minutes AS n "
        f"WHERE p.address LIKE 'bench-sensors/%' AND n.m >= {minutes - 1440}"
    )
    conn.execute(
        "INSERT INTO rollup_dirty (point_id, first_ts, last_ts) SELECT id, ?, ? FROM points",
        [start_us, start_us + (minutes - 1) * 60_000_000],
    )
    conn.execute("COMMIT")
    conn.close()
    result["generate_s"] = round(time.perf_counter() - started, 1)

    async def roll() -> None:
        historian = SQLiteHistorian(path)
        await historian.open()
        started = time.perf_counter()
        await historian.refresh_rollups()
        result["rollup_s"] = round(time.perf_counter() - started, 1)
        await historian.close()

    asyncio.run(roll())


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _wait_for_worker(worker: multiprocessing.Process, queue: multiprocessing.Queue) -> dict:
    """The worker's result; an error if it died without one (killed from outside, out of memory)."""
    while True:
        try:
            return queue.get(timeout=5)
        except queue_module.Empty:
            if not worker.is_alive():
                return {"error": f"the SQLite build process died (exit code {worker.exitcode})"}


def _sqlite_worker(path: str, meters: int, start_us: int, minutes: int, queue: multiprocessing.Queue) -> None:
    result: dict = {}
    try:
        build_sqlite(path, meters, start_us, minutes, result)
    except BaseException as exc:  # report, don't hang the parent
        result["error"] = repr(exc)
    queue.put(result)


# --------------------------------------------------------------------------- measurements


def site_of(address: str) -> str:
    """The ingest points are spread over several sites, with the same addresses in each: a write carries
    readings of all of them, as the recorder's coalesced writes do."""
    return INGEST_SITES[int(address[-3:]) % len(INGEST_SITES)]


def ingest_batches(readings: list[Reading]) -> list[list[SiteReadings]]:
    """The readings in writes of BATCH readings, each grouped by site."""
    out = []
    for offset in range(0, len(readings), BATCH):
        by_site: dict[str, list[Reading]] = {}
        for reading in readings[offset : offset + BATCH]:
            by_site.setdefault(site_of(reading.address), []).append(reading)
        out.append([SiteReadings(site, group) for site, group in by_site.items()])
    return out


def ingest_readings(count: int, end: datetime) -> list[Reading]:
    minutes = count // INGEST_POINTS
    start = end - timedelta(minutes=minutes)
    addresses = [f"ingest/p{k:03d}" for k in range(INGEST_POINTS)]
    return [
        Reading(address, start + timedelta(minutes=m), float(m + k), Quality.GOOD)
        for m in range(minutes)
        for k, address in enumerate(addresses)
    ]


async def measure_queries(historian, meters: int, end: datetime, rounds: int) -> dict:
    rng = np.random.default_rng(7)
    tz_end = end.astimezone(ZoneInfo(TIMEZONE)).date()
    first_day = tz_end - timedelta(days=364)
    out: dict = {}
    for resolution in ("day", "hour"):
        samples = []
        for _ in range(rounds):
            dwelling = f"d{int(rng.integers(meters)):03d}"
            started = time.perf_counter()
            frame = await historian.dwelling_energy(SITE_ID, first_day, tz_end, resolution, [dwelling])
            samples.append(time.perf_counter() - started)
        name = {"day": "dwelling_daily", "hour": "dwelling_hourly"}[resolution]
        out[name] = {"rows": len(frame), **percentiles(samples), "energy_kwh_total": float(frame.iloc[:, 0].sum())}
    addresses = [meter_address(k) for k in range(meters)] + [f"bench-sensors/p{k:03d}" for k in range(SENSORS)]
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        latest = await historian.latest(SITE_ID, addresses)
        samples.append(time.perf_counter() - started)
    out["latest"] = {"points": len(addresses), "found": len(latest), **percentiles(samples)}
    return out


async def ingest_timescale(dsn: str, readings: list[Reading], end: datetime, repeats: int) -> dict:
    historian = TimescaleHistorian(dsn, clock=lambda: end)
    await historian.open()
    await historian.upgrade()
    batches = ingest_batches(readings)
    await historian.write(ingest_batches(readings[:INGEST_POINTS])[0], received_at=end)  # registers the points
    ids = historian.catalogue.ids
    rows = [(r.ts, ids(site_of(r.address))[r.address], float(r.value), 0) for r in readings]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE readings_plain (ts timestamptz NOT NULL, point_id integer NOT NULL, "
            "value double precision, quality smallint NOT NULL)"
        )
        conn.execute("CREATE UNIQUE INDEX readings_plain_point_ts ON readings_plain (point_id, ts)")
    historian_rates, raw_rates = [], []
    retry_rate = None
    for _ in range(repeats):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE readings_plain")
            conn.execute("TRUNCATE readings")
            conn.execute("TRUNCATE rollup_dirty")
            conn.execute("CHECKPOINT")
            started = time.perf_counter()
            for offset in range(0, len(rows), BATCH):
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy("COPY readings_plain (ts, point_id, value, quality) FROM STDIN (FORMAT BINARY)") \
                            as cp:
                        cp.set_types(["timestamptz", "int4", "float8", "int2"])
                        for row in rows[offset : offset + BATCH]:
                            cp.write_row(row)
            raw_rates.append(len(rows) / (time.perf_counter() - started))
            conn.execute("CHECKPOINT")
        started = time.perf_counter()
        for batch in batches:
            await historian.write(batch, received_at=end)
        historian_rates.append(len(readings) / (time.perf_counter() - started))
        if retry_rate is None:
            # Everything again, as a replay after a timeout would: the staging path keeps it exactly once.
            started = time.perf_counter()
            stored = 0
            for batch in batches:
                stored += (await historian.write(batch, received_at=end)).stored
            retry_rate = len(readings) / (time.perf_counter() - started)
            assert stored == 0, stored
    with psycopg.connect(dsn) as conn:
        count, distinct = conn.execute("SELECT count(*), count(DISTINCT (point_id, ts)) FROM readings").fetchone()
    assert count == distinct == len(readings), (count, distinct)
    await historian.close()
    historian_rate, raw_rate = statistics.median(historian_rates), statistics.median(raw_rates)
    return {
        "readings": len(readings),
        "historian_rows_per_s": round(historian_rate),
        "raw_copy_rows_per_s": round(raw_rate),
        "ratio": round(historian_rate / raw_rate, 3),
        "replay_rows_per_s": round(retry_rate),
        "repeats": repeats,
    }


async def ingest_sqlite(path: str, readings: list[Reading], end: datetime, repeats: int) -> dict:
    import sqlite3

    historian = SQLiteHistorian(path, clock=lambda: end)
    await historian.open()
    await historian.upgrade()
    batches = ingest_batches(readings)
    await historian.write(ingest_batches(readings[:INGEST_POINTS])[0], received_at=end)  # registers the points
    ids = historian.catalogue.ids
    rows = [(ids(site_of(r.address))[r.address], to_us(r.ts), float(r.value), 0) for r in readings]
    conn = sqlite3.connect(path, isolation_level=None)
    # The historian's own connection settings, for a like-for-like comparison.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute(
        "CREATE TABLE readings_plain (point_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, "
        "quality INTEGER NOT NULL, PRIMARY KEY (point_id, ts)) WITHOUT ROWID"
    )
    historian_rates, raw_rates = [], []
    for _ in range(repeats):
        conn.execute("DELETE FROM readings_plain")
        conn.execute("DELETE FROM readings")
        conn.execute("DELETE FROM rollup_dirty")
        started = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO readings_plain VALUES (?, ?, ?, ?)", rows[offset : offset + BATCH])
            conn.execute("COMMIT")
        raw_rates.append(len(rows) / (time.perf_counter() - started))
        started = time.perf_counter()
        for batch in batches:
            await historian.write(batch, received_at=end)
        historian_rates.append(len(readings) / (time.perf_counter() - started))
    conn.close()
    await historian.close()
    historian_rate, raw_rate = statistics.median(historian_rates), statistics.median(raw_rates)
    return {
        "readings": len(readings),
        "historian_rows_per_s": round(historian_rate),
        "raw_insert_rows_per_s": round(raw_rate),
        "ratio": round(historian_rate / raw_rate, 3),
        "repeats": repeats,
    }


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, workdir: Path) -> dict:
    wall = time.perf_counter()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = args.days * 1440
    start_us = to_us(end) - minutes * 60_000_000
    sqlite_path = str(workdir / "history.db")

    log("starting the TimescaleDB cluster")
    cluster = PgCluster.create()
    try:
        # A server sized for a historian rather than PostgreSQL's minimal defaults.
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            for name, value in SERVER_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        cluster.stop()
        cluster.start()
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_year")
            conn.execute("CREATE DATABASE bench_ingest")
        year_dsn, ingest_dsn = cluster.dsn_for("bench_year"), cluster.dsn_for("bench_ingest")
        log(f"ingest: {args.ingest} readings, historian vs raw binary COPY")
        readings = ingest_readings(args.ingest, end)
        timescale_ingest = await ingest_timescale(ingest_dsn, readings, end, args.repeats)
        log(f"TimescaleDB ingest: {timescale_ingest}")
        sqlite_ingest = await ingest_sqlite(str(workdir / "ingest.db"), readings, end, args.repeats)
        log(f"SQLite ingest: {sqlite_ingest}")
        del readings
        # Bulk loading the year: chunks created by a COPY skip the WAL (the ingest above ran without this).
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            for name, value in BUILD_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        cluster.stop()
        cluster.start()

        historian = TimescaleHistorian(year_dsn, clock=lambda: end)
        await historian.open()
        await historian.upgrade()
        await historian.sync_site(site_entry(args.meters))
        ids = historian.catalogue.ids(SITE_ID)
        meter_ids = [ids[meter_address(k)] for k in range(args.meters)]
        sensor_ids = [ids[f"bench-sensors/p{k:03d}"] for k in range(SENSORS)]

        log(f"building {args.meters} meters x {args.days} days of 1-minute readings on both back ends")
        queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        worker = multiprocessing.get_context("spawn").Process(
            target=_sqlite_worker, args=(sqlite_path, args.meters, start_us, minutes, queue)
        )
        worker.start()
        started = time.perf_counter()
        await asyncio.to_thread(build_timescale, year_dsn, meter_ids, sensor_ids, start_us, minutes)
        timescale_build = {"generate_s": round(time.perf_counter() - started, 1)}
        started = time.perf_counter()
        await historian.refresh_rollups()
        timescale_build["rollup_s"] = round(time.perf_counter() - started, 1)
        with psycopg.connect(year_dsn, autocommit=True) as conn:
            timescale_build["raw_rows"] = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            timescale_build["hourly_rows"] = conn.execute("SELECT count(*) FROM rollup_hourly").fetchone()[0]
            conn.execute("VACUUM ANALYZE rollup_hourly")
            conn.execute("VACUUM ANALYZE rollup_daily")
        log(f"TimescaleDB built: {timescale_build}; waiting for SQLite")
        sqlite_build = await asyncio.to_thread(_wait_for_worker, worker, queue)
        worker.join()
        if "error" in sqlite_build:
            raise RuntimeError(f"SQLite build failed: {sqlite_build['error']}")
        log(f"SQLite built: {sqlite_build}")

        log("measuring TimescaleDB queries")
        for _ in range(5):  # warm the caches and the plan cache
            await measure_queries(historian, args.meters, end, 3)
        timescale_queries = await measure_queries(historian, args.meters, end, args.rounds)
        await historian.close()

        sqlite_historian = SQLiteHistorian(sqlite_path, clock=lambda: end)
        await sqlite_historian.open()
        log("measuring SQLite queries")
        await measure_queries(sqlite_historian, args.meters, end, 3)
        sqlite_queries = await measure_queries(sqlite_historian, args.meters, end, args.rounds)
        await sqlite_historian.close()
        for name in ("dwelling_daily", "dwelling_hourly"):
            # Both back ends roll up the same data: the same energy, to rounding.
            a, b = timescale_queries[name]["energy_kwh_total"], sqlite_queries[name]["energy_kwh_total"]
            assert abs(a - b) < 1e-6 * max(1.0, abs(a)), (name, a, b)

    finally:
        cluster.remove()

    return {
        "benchmark": "history",
        "goals": {"ingest_ratio_min": 0.5, "dwelling_p99_ms_max": 50, "latest_1000_ms_max": 20},
        "data": {"meters": args.meters, "days": args.days, "sensors": SENSORS, "timezone": TIMEZONE,
                 "end": end.isoformat()},
        "server_settings": SERVER_SETTINGS,
        "build_settings": BUILD_SETTINGS,
        "timescaledb": {"build": timescale_build, "ingest": timescale_ingest, **timescale_queries},
        "sqlite": {"build": sqlite_build, "ingest": sqlite_ingest, **sqlite_queries},
        "wall_s": round(time.perf_counter() - wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=200, help="query repetitions for the percentiles")
    parser.add_argument("--repeats", type=int, default=3, help="ingest repetitions (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-history-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
