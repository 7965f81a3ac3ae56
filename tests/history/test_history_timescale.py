"""What only the TimescaleDB back end has: the hypertable layout, the license probe, chunk retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from drivers.base import Quality, Reading
from gridctl.history import SiteReadings
from gridctl.history.timescale import TimescaleHistorian

pytestmark = pytest.mark.timescale


@pytest.fixture
async def historian(timescale_db: str, site):
    h = TimescaleHistorian(timescale_db)
    await h.open()
    await h.upgrade()
    await h.sync_site(site)
    try:
        yield h
    finally:
        await h.close()


async def test_hypertable_without_default_index(historian: TimescaleHistorian, timescale_db: str):
    with psycopg.connect(timescale_db) as conn:
        indexes = [row[0] for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'readings'").fetchall()]
        assert indexes == ["CREATE UNIQUE INDEX readings_point_ts ON public.readings USING btree (point_id, ts)"]
        interval = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = 'readings'"
        ).fetchone()[0]
        assert interval == timedelta(days=7)


async def test_license_decides_what_is_used(historian: TimescaleHistorian, timescale_db: str):
    capabilities = await historian.capabilities()
    with psycopg.connect(timescale_db) as conn:
        license_name = conn.execute("SHOW timescaledb.license").fetchone()[0]
    assert capabilities["license"] == license_name
    assert capabilities["offers"] == {
        "continuous_aggregates": license_name == "timescale",
        "compression": license_name == "timescale",
    }
    assert capabilities["uses"]["compression"] == (license_name == "timescale")
    assert capabilities["uses"]["continuous_aggregates"] is False
    # Migration 3 is recorded on every edition, with or without anything to do.
    with psycopg.connect(timescale_db) as conn:
        assert conn.execute("SELECT name FROM schema_migrations WHERE version = 3").fetchone() is not None


async def test_retention_drops_whole_chunks(historian: TimescaleHistorian, timescale_db: str):
    now = datetime(2026, 11, 20, tzinfo=UTC)
    for days_ago in (600, 500, 10):
        base = now - timedelta(days=days_ago)
        await historian.write([SiteReadings("test-site", [
            Reading("meters/pv_power", base + timedelta(hours=h), 1.0, Quality.GOOD) for h in range(3)])],
            received_at=base + timedelta(hours=3))
    outcome = await historian.apply_retention(now)
    assert outcome.chunks_dropped == 2
    with psycopg.connect(timescale_db) as conn:
        assert conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 3
        # Rolled up before they went.
        assert conn.execute("SELECT count(*) FROM rollup_daily").fetchone()[0] == 3


async def test_unreachable_server_raises_unavailable(timescale, site):
    from gridctl.history import HistorianUnavailable

    h = TimescaleHistorian(f"host=127.0.0.1 port={_closed_port()} user=postgres dbname=postgres", timeout_s=1)
    await h.open()  # does not wait for the server
    try:
        with pytest.raises(HistorianUnavailable):
            await h.write([SiteReadings("test-site", [Reading("meters/pv_power", datetime.now(UTC), 1.0, Quality.GOOD)])])
    finally:
        await h.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
