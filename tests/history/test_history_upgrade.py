"""`gridctl db upgrade` of a database landed before points were keyed by site, on both back ends.

The old schema is the frozen DDL in legacy/ (as commit 1471ab2 created it), with rows in every table.
Two demonstrators had written into it; each has a grid meter, so their grid-meter series were one. The
upgrade loses no row, leaves each shared series with the site that owned it last, says which they
were, and from then on the two sites keep separate series.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from drivers.base import Quality, Reading
from gridctl.cli import main
from gridctl.config import load_site
from gridctl.history import Historian, SharedSeries, SiteReadings
from gridctl.history.migrations import MIGRATIONS, SITE_KEYED_VERSION, UNATTRIBUTED_SITE
from gridctl.history.timebuckets import to_us

REPO = Path(__file__).resolve().parents[2]
LEGACY = Path(__file__).parent / "legacy"
UNION, DEULE = "zac-union", "zac-haute-deule"
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
READINGS_PER_POINT = 10
TABLES = ["sites", "points", "dwellings", "readings", "rollup_dirty", "rollup_hourly", "rollup_daily",
          "readings_quarantine", "api_users", "consent_events", "erasures", "write_audit", "policy_versions",
          "demand_response_events"]

# id, address, owner (the site that synced last), unit, kind, kWh factor
POINTS = [
    (1, "grid-meter/power", DEULE, "kW", "measurement", None),
    (2, "grid-meter/import-energy", DEULE, "kWh", "energy_counter", 1.0),
    (3, "canopy-pv-inverter/power", UNION, "kW", "measurement", None),
    # A dwelling meter two sites' dwellings both named.
    (4, "meter-a-01/energy", DEULE, "kWh", "energy_counter", 1.0),
    # Readings of a point no site file described: no site.
    (5, "stray/x", None, "", "measurement", None),
]


def _legacy_rows(postgres: bool) -> list[tuple[str, list[Any]]]:
    def ts(moment: datetime) -> Any:
        return moment if postgres else to_us(moment)

    def flag(value: bool) -> Any:
        return value if postgres else int(value)

    rows: list[tuple[str, list[Any]]] = [
        ("INSERT INTO sites VALUES (?, 'Europe/Paris', 400)", [site]) for site in (UNION, DEULE)
    ]
    rows += [("INSERT INTO points (id, address, site_id, unit, kind, energy_factor_kwh) VALUES (?, ?, ?, ?, ?, ?)",
              list(p)) for p in POINTS]
    rows += [("INSERT INTO dwellings VALUES (?, 'a-01', 4)", [site]) for site in (UNION, DEULE)]
    for point_id, *_ in POINTS:
        for k in range(READINGS_PER_POINT):
            rows.append(("INSERT INTO readings (point_id, ts, value, quality) VALUES (?, ?, ?, 0)",
                         [point_id, ts(T0 + timedelta(minutes=15 * k)), float(100 * point_id + k)]))
    rows += [
        ("INSERT INTO rollup_dirty (point_id, first_ts, last_ts) VALUES (2, ?, ?)", [ts(T0), ts(T0)]),
        ("INSERT INTO rollup_hourly (point_id, bucket, sample_count, energy_kwh) VALUES (2, ?, 4, 3.0)", [ts(T0)]),
        ("INSERT INTO rollup_hourly (point_id, bucket, sample_count, value_avg) VALUES (1, ?, 4, 12.5)", [ts(T0)]),
        ("INSERT INTO rollup_daily (point_id, bucket, sample_count, energy_kwh) VALUES (2, ?, 4, 3.0)", [ts(T0)]),
        ("INSERT INTO readings_quarantine (address, ts, value, quality, received_at, reason) "
         "VALUES ('grid-meter/power', ?, 1.0, 0, ?, 'future')", [ts(T0 + timedelta(days=1)), ts(T0)]),
        ("INSERT INTO readings_quarantine (address, ts, value, quality, received_at, reason) "
         "VALUES ('stray/x', ?, 2.0, 0, ?, 'past')", [ts(T0 - timedelta(days=30)), ts(T0)]),
        ("INSERT INTO api_users (id, name, role, scope, token_hash, created_at, expires_at) "
         "VALUES (1, 'alice', 'manager', 'zac-union', 'digest', ?, ?)", [ts(T0), ts(T0 + timedelta(days=30))]),
        ("INSERT INTO consent_events (user_id, site_id, dwelling_id, purpose, granted, at) "
         "VALUES (1, 'zac-union', 'a-01', 'load_curve', ?, ?)", [flag(True), ts(T0)]),
        ("INSERT INTO erasures (requested_at, dwellings) VALUES (?, 1)", [ts(T0)]),
        ("INSERT INTO write_audit (ts, site_id, address, device_id, actor, reason, outcome, clamped, ramped, unit) "
         "VALUES (?, 'zac-union', 'battery/power-setpoint', 'battery', 'gridctl', 'schedule', 'written', ?, ?, 'kW')",
         [ts(T0), flag(False), flag(False)]),
        ("INSERT INTO policy_versions VALUES ('zac-union', 1, '{}', 'alice', 'first', ?)", [ts(T0)]),
        ("INSERT INTO demand_response_events VALUES ('zac-union', 'dr-1', ?, ?, 100.0, 0.3, 'alice', ?)",
         [ts(T0), ts(T0 + timedelta(hours=2)), ts(T0)]),
    ]
    return rows


def build_legacy(target: str) -> None:
    """The old schema with rows in every table, written as the old version would have left it."""
    postgres = not target.endswith(".db")
    ddl = (LEGACY / f"schema-1471ab2.{'postgres' if postgres else 'sqlite'}.sql").read_text()
    if postgres:
        with psycopg.connect(target) as conn:
            conn.execute(ddl)  # without parameters, one execute runs the whole script
            for sql, params in _legacy_rows(True):
                conn.execute(sql.replace("?", "%s"), params)
            # The rows above name their ids; identities move on as if the old version had inserted them.
            for table in ("points", "api_users"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
    else:
        conn = sqlite3.connect(target)
        conn.executescript(ddl)
        with conn:
            for sql, params in _legacy_rows(False):
                conn.execute(sql, params)
        conn.close()


def counts(target: str) -> dict[str, int]:
    if target.endswith(".db"):
        conn = sqlite3.connect(target)
        try:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            conn.close()
    with psycopg.connect(target) as pg:
        return {t: pg.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def owners(target: str) -> dict[str, str]:
    sql = "SELECT address, site_id FROM points"
    if target.endswith(".db"):
        conn = sqlite3.connect(target)
        try:
            return dict(conn.execute(sql).fetchall())
        finally:
            conn.close()
    with psycopg.connect(target) as pg:
        return dict(pg.execute(sql).fetchall())


async def test_upgrade_keeps_every_row_and_names_the_shared_series(backend: str, make_historian):
    build_legacy(backend)
    before = counts(backend)
    assert all(before[t] > 0 for t in TABLES), before
    sites = [load_site(REPO / "sites" / name) for name in (UNION, DEULE)]
    h: Historian = make_historian(backend)
    await h.open()
    try:
        assert await h.schema_version() == 102
        applied = await h.upgrade(sites)
        # SQLite never had version 3 (compression): it is recorded now, with nothing to do.
        landed = {1, 2, 100, 101, 102} | ({3} if h.kind == "timescale" else set())
        assert applied == [m.version for m in MIGRATIONS if m.version not in landed]
        assert SITE_KEYED_VERSION in applied
        assert await h.schema_version() == max(m.version for m in MIGRATIONS)

        after = counts(backend)
        # Not a row lost; the point no site had gets a site of its own.
        assert after == dict(before, sites=before["sites"] + 1)
        assert owners(backend) == {address: owner or UNATTRIBUTED_SITE for _, address, owner, *_ in POINTS}
        assert await h.shared_series() == [
            SharedSeries(DEULE, "grid-meter/import-energy", (DEULE, UNION), READINGS_PER_POINT),
            SharedSeries(DEULE, "grid-meter/power", (DEULE, UNION), READINGS_PER_POINT),
            SharedSeries(DEULE, "meter-a-01/energy", (DEULE, UNION), READINGS_PER_POINT),
        ]
        # Quarantined readings take the site of their point.
        held = {q.address: q.site_id for q in await h.quarantined()}
        assert held == {"grid-meter/power": DEULE, "stray/x": UNATTRIBUTED_SITE}

        # The shared series stays with its last owner; the other site starts a series of its own.
        for site in sites:
            await h.sync_site(site)
        end = T0 + timedelta(hours=3)
        kept = await h.query(DEULE, ["grid-meter/power"], T0, end, timedelta(hours=3), "count")
        assert kept["grid-meter/power"].sum() == READINGS_PER_POINT
        assert await h.latest(UNION, ["grid-meter/power"]) == {}
        at = T0 + timedelta(days=1)
        outcome = await h.write([SiteReadings(UNION, [Reading("grid-meter/power", at, 50.0, Quality.GOOD)]),
                                 SiteReadings(DEULE, [Reading("grid-meter/power", at, 70.0, Quality.GOOD)])],
                                received_at=at)
        assert outcome.stored == 2
        assert (await h.latest(UNION, ["grid-meter/power"]))["grid-meter/power"].value == 50.0
        assert (await h.latest(DEULE, ["grid-meter/power"]))["grid-meter/power"].value == 70.0
        # Upgrading again does nothing.
        assert await h.upgrade(sites) == []
    finally:
        await h.close()


def test_db_upgrade_prints_the_shared_series(tmp_path, capsys):
    target = str(tmp_path / "landed.db")
    build_legacy(target)
    args = ["db", "upgrade", "--db", target, "--site", str(REPO / "sites" / UNION), "--site",
            str(REPO / "sites" / DEULE)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"(applied 3, {SITE_KEYED_VERSION}" in out
    assert "3 series had been written by several sites" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(f"  {DEULE}")]
    assert rows == [[DEULE, address, str(READINGS_PER_POINT), f"{DEULE},", UNION]
                    for address in ("grid-meter/import-energy", "grid-meter/power", "meter-a-01/energy")]
