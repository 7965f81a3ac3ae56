"""The journal shipper: in order and exactly once into `write_audit` (SQLite and TimescaleDB), through a
lost acknowledgement and a restart; control goes on while PostgreSQL is stopped and shipping resumes
within seconds of its return; hands off reaches the database and comes back from it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from gridctl.api.db import open_database
from gridctl.api.store import ApiStore, AuditFilter, HandsOffRecord
from gridctl.config import load_site
from gridctl.config.models import Site
from gridctl.dispatch import Outcome
from gridctl.dispatch.journal import WriteJournal
from gridctl.dispatch.shipper import JournalShipper, ShipperSettings
from gridctl.history import open_historian
from tests.dispatch.rig import SITES, Rig

CHARGERS = [f"charger-{n:02d}" for n in range(1, 7)]
FAST = ShipperSettings(linger_s=0.05, backoff_min_s=0.2, backoff_max_s=2.0)


@pytest.fixture(scope="module")
def union() -> Site:
    return load_site(SITES / "zac-union")


async def _upgraded(target: str) -> None:
    historian = open_historian(target)
    await historian.open()
    await historian.upgrade()
    await historian.close()


async def _until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():  # type: ignore[misc]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _audit_keys(target: str) -> list[tuple[str, int, str, str]]:
    db = open_database(target)
    await db.open()
    try:
        rows = await db.fetch("SELECT instance_id, journal_seq, address, outcome FROM write_audit ORDER BY id")
    finally:
        await db.close()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def _charge(rig: Rig, amps: float) -> None:
    for charger in CHARGERS:
        await rig.write(f"{charger}/current-limit", amps)


async def test_records_arrive_in_order_exactly_once_through_a_lost_acknowledgement(union: Site, tmp_path: Path) -> None:
    target = str(tmp_path / "gridctl.sqlite3")
    await _upgraded(target)
    path = tmp_path / "writes.sqlite3"
    journal = WriteJournal(path)
    rig = Rig(union, CHARGERS, journal=journal)
    await _charge(rig, 16.0)
    await rig.arbiter.hands_off("device:charger-03", "operator:alice", "cable check")
    # Shipped, committed in the database... and the process dies before the journal notes it.
    db = open_database(target)
    await db.open()
    await ApiStore(db).ship_journal(journal.pending(100).records)
    await db.close()
    journal.close()

    journal = WriteJournal(path)
    assert journal.backlog() == 8
    shipper = JournalShipper(journal, target, FAST)
    assert await shipper.drain() == 8
    rig = Rig(union, CHARGERS, journal=journal, devices=rig.devices)
    rig.clock.advance(60)
    await _charge(rig, 20.0)
    assert await shipper.drain() == 5  # charger-03 is hands off
    keys = await _audit_keys(target)
    # Every write once, in journal order; number 7 is the hands off, kept in its own table.
    assert [k[1] for k in keys] == [*range(1, 7), *range(8, 14)]
    assert {k[0] for k in keys} == {journal.instance_id}
    assert journal.backlog() == 0
    store = ApiStore(open_database(target))
    await store.db.open()
    entries = await store.audit_entries(AuditFilter(union.id, device_id="charger-03"))
    assert [e.outcome for e in entries] == [Outcome.RELINQUISHED, Outcome.WRITTEN]
    assert all(e.instance_id == journal.instance_id and e.journal_seq and e.outcome_at for e in entries)
    assert [(r.scope, r.actor) for r in await store.hands_off(union.id)] == [("device:charger-03", "operator:alice")]
    await store.db.close()
    journal.close()


async def test_a_record_completed_while_a_batch_is_on_its_way_ships_before_the_stop_ends(
        union: Site, tmp_path: Path) -> None:
    target = str(tmp_path / "gridctl.sqlite3")
    await _upgraded(target)
    journal = WriteJournal(tmp_path / "writes.sqlite3")
    rig = Rig(union, CHARGERS[:2], journal=journal)
    shipper = JournalShipper(journal, target, FAST)
    ship = shipper.store.ship_journal
    on_its_way, gate = asyncio.Event(), asyncio.Event()

    async def slow_ship(records):  # type: ignore[no-untyped-def]
        on_its_way.set()
        await gate.wait()  # a database slow to commit
        await ship(records)

    shipper.store.ship_journal = slow_ship  # type: ignore[method-assign]
    shipper.start()
    await rig.write("charger-01/current-limit", 16.0)
    await asyncio.wait_for(on_its_way.wait(), 10)
    # The last write of the stop (a relinquish) completes while the batch before it is on its way, and the
    # stop begins at once.
    await rig.write("charger-02/current-limit", 16.0)
    stopping = asyncio.create_task(shipper.stop())
    await asyncio.sleep(0.1)
    gate.set()
    await asyncio.wait_for(stopping, 15)
    assert [k[1] for k in await _audit_keys(target)] == [1, 2]
    assert journal.backlog() == 0
    journal.close()


async def test_control_goes_on_through_a_postgresql_outage_and_shipping_resumes(
        union: Site, tmp_path: Path, timescale, timescale_db: str) -> None:
    await _upgraded(timescale_db)
    journal = WriteJournal(tmp_path / "writes.sqlite3")
    rig = Rig(union, CHARGERS, journal=journal)
    shipper = JournalShipper(journal, timescale_db, FAST)
    shipper.start()
    try:
        await _charge(rig, 16.0)

        async def shipped(count: int) -> bool:
            return len(await _audit_keys(timescale_db)) == count

        await _until(lambda: shipped(6), 30, "the first writes in the database")
        timescale.stop()
        try:
            # Control never waits for the database: every write and lease renewal completes at once.
            for minute in range(1, 4):
                rig.clock.advance(timedelta(seconds=20))
                renewed = await rig.arbiter.renew_leases()
                assert [e.outcome for e in renewed] == [Outcome.RENEWED] * 6
                await _charge(rig, 16.0 + minute)
            await rig.arbiter.hands_off("device:charger-06", "operator:alice", "storm")
            assert all(rig.devices[c].get("current-limit") == 19.0 for c in CHARGERS[:5])
            await asyncio.sleep(1.0)
            assert journal.backlog() == 38 and shipper.last_error is not None
        finally:
            timescale.start()
        returned = time.monotonic()
        await _until(lambda: shipped(43), 60, "the backlog in the database")
        # Back within seconds: the back-off never exceeds its bound.
        resumed_s = time.monotonic() - returned
        print(f"shipping resumed {resumed_s:.1f} s after PostgreSQL was back")
        assert resumed_s < 15
    finally:
        await shipper.stop()
    keys = await _audit_keys(timescale_db)
    assert [k[1] for k in keys] == [*range(1, 43), 44]
    with psycopg.connect(timescale_db) as conn:
        assert conn.execute("SELECT scope, actor FROM hands_off").fetchall() == [("device:charger-06", "operator:alice")]
        assert conn.execute("SELECT action, journal_seq FROM hands_off_log").fetchall() == [("off", 43)]
    journal.close()


async def test_hands_off_at_start_joins_the_journal_and_the_database(union: Site, tmp_path: Path) -> None:
    target = str(tmp_path / "gridctl.sqlite3")
    await _upgraded(target)
    journal = WriteJournal(tmp_path / "writes.sqlite3")
    rig = Rig(union, ["charger-01", "charger-02"], journal=journal)
    await rig.arbiter.hands_off("device:charger-01", "operator:alice", "cable check")
    # Another data directory (a replaced controller) recorded a hands off this journal never saw.
    store = ApiStore(open_database(target))
    await store.db.open()
    await store.put_hands_off(HandsOffRecord(union.id, "device:charger-02", "operator:bob", "meter swap",
                                             rig.clock.now(), "old-host/abc"))
    shipper = JournalShipper(journal, target, FAST)
    assert await shipper.restore_hands_off([rig.arbiter])
    assert rig.arbiter.hands_off_scopes() == {"device:charger-01", "device:charger-02"}
    assert {r.scope for r in await store.hands_off(union.id)} == {"device:charger-01", "device:charger-02"}
    assert await rig.write("charger-02/current-limit", 16.0) is None
    # An operator's hands on is the only thing that ends one, and it reaches the database.
    await rig.arbiter.hands_on("device:charger-01", "operator:alice")
    await shipper.drain()
    assert {r.scope for r in await store.hands_off(union.id)} == {"device:charger-02"}
    await store.db.close()
    journal.close()
    # A new data directory, its journal empty (nothing to ship): the database's hands off still come back.
    fresh = WriteJournal(tmp_path / "fresh-writes.sqlite3")
    rig = Rig(union, ["charger-01", "charger-02"], journal=fresh)
    assert await JournalShipper(fresh, target, FAST).restore_hands_off([rig.arbiter])
    assert rig.arbiter.hands_off_scopes() == {"device:charger-02"}
    fresh.close()
    # The database away: the journal alone decides, and says so.
    journal = WriteJournal(tmp_path / "writes.sqlite3")
    rig = Rig(union, ["charger-01", "charger-02"], journal=journal)
    dead = JournalShipper(journal, "postgresql://gridctl@127.0.0.1:9/none?connect_timeout=1", FAST)
    assert not await dead.restore_hands_off([rig.arbiter], timeout_s=3)
    assert rig.arbiter.hands_off_scopes() == {"device:charger-02"}
    journal.close()
