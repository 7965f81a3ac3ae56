"""The database-outage drill of the parking silo, on a clock ten times the wall's: PostgreSQL stops for
150 simulated seconds while the service runs its 24 chargers. Control never waits for it: every lease is
renewed in time (no charger falls back to 6 A), every write is journalled, and the audit reaches the
database once PostgreSQL is back, each record once, with old values that follow the writes."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from gridctl.config import load_site
from gridctl.service.runner import Cadence, ServiceHost, SiteOptions
from gridctl.service.web import attach_api
from sim.core import SimClock
from sim.site import SiteSimulation, free_port_offset
from tests.service.test_run import _until

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "sites" / "zac-union"
SPEED = 10.0
OUTAGE_S = 15.0  # wall seconds: 150 s of the service's clock, longer than the chargers' timeout
# The chargers' communication timeout, as the installer sets it (their lease is 20 s).
CHARGER_TIMEOUT = timedelta(seconds=120)


@pytest.mark.slow
async def test_chargers_keep_their_leases_through_a_database_outage(tmp_path: Path, timescale,
                                                                    timescale_db: str) -> None:
    site = load_site(SITE)
    chargers = [c.id for a in site.assets if a.type == "ev_charger_pool" for c in a.chargers]
    offset = free_port_offset(site)
    clock = SimClock(datetime.now(UTC), speed=SPEED)
    simulation = SiteSimulation(SITE, clock, seed=11, port_offset=offset, max_step=timedelta(seconds=30))
    for charger in chargers:
        simulation.devices[charger].set("communication-timeout", CHARGER_TIMEOUT.total_seconds())
    cadence = Cadence(dispatch=timedelta(seconds=60), optimise=timedelta(hours=1))
    host = ServiceHost([SiteOptions(site=SITE, port_offset=offset, cadence=cadence)], timescale_db,
                       tmp_path / "spool", clock=clock, speed=SPEED, min_poll_s=1.0, cadence=cadence)
    await host.open_history()
    app = await attach_api(host)  # wired as `gridctl run` wires it
    await simulation.start()
    stopped = False
    try:
        await host.start()
        devices = simulation.devices

        def limits_written() -> bool:
            return all(any(w[1] == "current-limit" for w in devices[c].writes) for c in chargers)

        await _until(limits_written, 120, "every charger's current limit")
        timescale.stop()
        outage_start = clock.now()
        try:
            await asyncio.sleep(OUTAGE_S)
            outage_end = clock.now()
            backlog = host.journal.backlog()
        finally:
            timescale.start()
        assert backlog > len(chargers)  # the writes of the outage wait in the journal
        # Every charger heard from gridctl within its timeout all through the outage: none fell back.
        for charger in chargers:
            times = [outage_start - CHARGER_TIMEOUT] + [
                ts for ts, point, value, _ in devices[charger].writes
                if point == "current-limit" and value is not None and outage_start - CHARGER_TIMEOUT <= ts]
            times = [t for t in times if t <= outage_end] + [outage_end]
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            assert max(gaps) < CHARGER_TIMEOUT, f"{charger}: {max(gaps)} without a renewal"
        await _until(lambda: host.journal.backlog() == 0, 60, "the journal shipped")
        await host.stop()
        stopped = True
    finally:
        if not stopped:
            await host.stop()
        await simulation.stop()
        await app.state.context.store.db.close()

    with psycopg.connect(timescale_db) as conn:
        rows = conn.execute(
            "SELECT instance_id, journal_seq, address, outcome, old_value, written_value, ts FROM write_audit "
            "ORDER BY journal_seq").fetchall()
    with sqlite3.connect(tmp_path / "journal" / "writes.sqlite3") as journal:
        seqs = [s for (s,) in journal.execute(
            "SELECT seq FROM records WHERE action NOT IN ('hands_off', 'hands_on') ORDER BY seq")]
    assert [r[1] for r in rows] == seqs and len({r[0] for r in rows}) == 1
    during = [r for r in rows if outage_start <= r[6] <= outage_end and r[2].endswith("/current-limit")]
    assert {r[3] for r in during} <= {"written", "renewed"} and len(during) >= len(chargers)
    # Old values follow the writes across the outage: each is what the charger had from the write before.
    for charger in chargers:
        mine = [r for r in rows if r[2] == f"{charger}/current-limit" and r[3] in ("written", "renewed")]
        for before, after in itertools.pairwise(mine):
            assert float(after[4]) == pytest.approx(float(before[5])), (charger, before, after)
