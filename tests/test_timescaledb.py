"""The test cluster really runs TimescaleDB: hypertables chunk, time_bucket answers, restarts keep data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

pytestmark = pytest.mark.timescale

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
SAMPLES = 3 * 24 * 4  # three UTC days of 15-minute samples


def _create_readings(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE readings (
            ts timestamptz NOT NULL,
            point_id text NOT NULL,
            value double precision NOT NULL,
            quality smallint NOT NULL DEFAULT 0,
            UNIQUE (point_id, ts)
        )
        """
    )
    # Without TimescaleDB's extra (ts DESC) index: the unique key serves gridctl's queries.
    conn.execute(
        "SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), create_default_indexes => false)"
    )


def _load_readings(conn: psycopg.Connection) -> None:
    # Sample i of meter1 has value i; pv1 is 0.5 on every sample.
    with conn.cursor() as cur, cur.copy("COPY readings (ts, point_id, value) FROM STDIN") as copy:
        for i in range(SAMPLES):
            copy.write_row((START + i * STEP, "meter1/power_kw", float(i)))
            copy.write_row((START + i * STEP, "pv1/power_kw", 0.5))


def test_timescaledb_is_loaded_and_usable(timescale, timescale_db):
    with psycopg.connect(timescale_db, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        assert conn.execute("SHOW port").fetchone()[0] == str(timescale.port)
        assert "timescaledb" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert conn.execute("SHOW timescaledb.license").fetchone()[0] in ("apache", "timescale")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0]
        assert re.fullmatch(r"2\.\d+\.\d+", version), version
        # A fresh database per test: nothing from other tests.
        assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables").fetchone()[0] == 0

        _create_readings(conn)
        _load_readings(conn)

        # One chunk per UTC day.
        assert conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()[0] == 3
        assert (
            conn.execute(
                "SELECT num_chunks FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
            ).fetchone()[0]
            == 3
        )
        # A query on one day reads only that day's chunk.
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT * FROM readings WHERE ts >= '2026-01-02' AND ts < '2026-01-03'"
            ).fetchall()
        )
        assert len(set(re.findall(r"_hyper_\d+_\d+_chunk", plan))) == 1, plan

        hourly = conn.execute(
            """
            SELECT time_bucket('1 hour', ts) AS hour, count(*), sum(value), avg(value)
            FROM readings WHERE point_id = 'meter1/power_kw'
            GROUP BY hour ORDER BY hour
            """
        ).fetchall()
        assert len(hourly) == 72
        # Hour h holds samples 4h .. 4h+3.
        for h, (hour, count, total, mean) in enumerate(hourly):
            assert hour == START + timedelta(hours=h)
            assert count == 4
            assert total == 16 * h + 6
            assert mean == 4 * h + 1.5

        # Buckets on local midnight in Paris (UTC+1 in January) cut the UTC days one hour early.
        daily_paris = conn.execute(
            """
            SELECT time_bucket('1 day', ts, 'Europe/Paris') AS day, count(*), sum(value)
            FROM readings WHERE point_id = 'pv1/power_kw'
            GROUP BY day ORDER BY day
            """
        ).fetchall()
        assert daily_paris == [
            (datetime(2025, 12, 31, 23, tzinfo=UTC), 92, 46.0),
            (datetime(2026, 1, 1, 23, tzinfo=UTC), 96, 48.0),
            (datetime(2026, 1, 2, 23, tzinfo=UTC), 96, 48.0),
            (datetime(2026, 1, 3, 23, tzinfo=UTC), 4, 2.0),
        ]

        # The unique key keeps a retried write from duplicating a reading.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO readings (ts, point_id, value) VALUES (%s, 'meter1/power_kw', 1)", [START])


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_data_survives_stop_and_start(timescale, timescale_db, mode):
    with psycopg.connect(timescale_db, autocommit=True) as conn:
        _create_readings(conn)
        _load_readings(conn)
    held = psycopg.connect(timescale_db, autocommit=True)
    try:
        timescale.stop(mode=mode)
        assert not timescale.is_running()
        # The outage is real: new and existing connections both fail.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(timescale_db, connect_timeout=2)
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    finally:
        held.close()
        timescale.start()
    assert timescale.is_running()
    assert _count(timescale_db) == 2 * SAMPLES
    with psycopg.connect(timescale_db) as conn:
        assert conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()[0] == 3
        assert (
            conn.execute("SELECT sum(value) FROM readings WHERE point_id = 'meter1/power_kw'").fetchone()[0]
            == SAMPLES * (SAMPLES - 1) / 2
        )
