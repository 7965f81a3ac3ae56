"""The local write journal: the intent durable before the device hears anything, the outcome after, an
intent a dead process never completed closed as interrupted, one process per journal, and no write
without its record."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from drivers.base import Quality, Reading
from gridctl.alarms import AlarmKind
from gridctl.config import load_site
from gridctl.config.models import Site
from gridctl.dispatch import Outcome, WriteRequest
from gridctl.dispatch.journal import Action, Intent, JournalBusy, JournalFull, WriteJournal
from tests.dispatch.rig import SITES, START, Rig


@pytest.fixture(scope="module")
def union() -> Site:
    return load_site(SITES / "zac-union")


def _rows(path: Path, address: str) -> list[tuple]:
    """The journal file as another process (or an investigator) sees it."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT action, written_value, outcome, read_back FROM records WHERE address = ? "
                            "ORDER BY seq", [address]).fetchall()


async def test_the_intent_is_on_disk_before_the_device_is_written_and_the_outcome_after(
        union: Site, tmp_path: Path) -> None:
    path = tmp_path / "writes.sqlite3"
    journal = WriteJournal(path, hostname="controller-1")
    rig = Rig(union, ["charger-01"], journal=journal)
    driver = rig.drivers["charger-01"]
    driver.hold = asyncio.Event()
    task = asyncio.create_task(rig.write("charger-01/current-limit", 16.0))
    await asyncio.wait_for(driver.entered.wait(), 10)
    # In flight: the device has not taken it yet, the journal already has it, without an outcome.
    assert rig.devices["charger-01"].get("current-limit") != 16.0
    assert _rows(path, "charger-01/current-limit") == [("write", "16.0", None, None)]
    driver.hold.set()
    entry = await task
    assert entry is not None and entry.outcome == Outcome.WRITTEN
    assert _rows(path, "charger-01/current-limit") == [("write", "16.0", "written", "16.0")]
    assert entry.instance_id == journal.instance_id and entry.instance_id.startswith("controller-1/")
    assert entry.journal_seq == 1 and entry.outcome_at is not None
    assert [c.address for c in journal.commanded(union.id)] == ["charger-01/current-limit"]
    journal.close()


async def test_an_intent_a_dead_process_never_completed_is_closed_as_interrupted(union: Site, tmp_path: Path) -> None:
    path = tmp_path / "writes.sqlite3"
    journal = WriteJournal(path)
    instance = journal.instance_id
    intent = Intent(ts=START, site_id=union.id, address="charger-01/current-limit", action=Action.WRITE,
                    actor="gridctl:optimizer", reason="plan", unit="A", requested_value=20.0, written_value=20.0)
    await journal.intent(intent)
    # The process dies here: no outcome. The next one finds the intent and says what is known of it.
    journal.close()
    reopened = WriteJournal(path)
    assert reopened.interrupted == 1 and reopened.instance_id == instance and reopened.run_id != journal.run_id
    (entry,) = reopened.pending(10).records
    assert entry.outcome == Outcome.INTERRUPTED and entry.written_value == 20.0  # type: ignore[union-attr]
    assert "may or may not hold the value" in (entry.error or "")  # type: ignore[union-attr]
    # Still counted as held: the device may have it.
    assert [c.value for c in reopened.commanded(union.id)] == [20.0]
    reopened.close()


async def test_a_write_cut_short_by_the_stop_is_closed_as_interrupted_at_once(union: Site, tmp_path: Path) -> None:
    path = tmp_path / "writes.sqlite3"
    journal = WriteJournal(path)
    rig = Rig(union, ["charger-01"], journal=journal)
    driver = rig.drivers["charger-01"]
    driver.hold = asyncio.Event()
    task = asyncio.create_task(rig.write("charger-01/current-limit", 16.0))
    await asyncio.wait_for(driver.entered.wait(), 10)
    task.cancel()  # the service stops while the device has not answered
    with pytest.raises(asyncio.CancelledError):
        await task
    # Closed now, by this run, so it ships before the process ends rather than at the next start.
    assert _rows(path, "charger-01/current-limit") == [("write", "16.0", "interrupted", None)]
    (entry,) = journal.pending(10).records
    assert "cut short by the service's stop" in (entry.error or "")  # type: ignore[union-attr]
    assert journal.backlog() == 1
    # An intent whose outcome never came (its journalling itself was cancelled) is closed at a clean stop.
    await journal.intent(Intent(ts=START, site_id=union.id, address="charger-01/current-limit", action=Action.WRITE,
                                actor="gridctl:optimizer", reason="plan", unit="A", requested_value=8.0,
                                written_value=8.0))
    assert len(journal.pending(10).records) == 1
    assert await journal.close_open() == 1
    assert [r.outcome for r in journal.pending(10).records] == [Outcome.INTERRUPTED] * 2
    journal.close()
    reopened = WriteJournal(path)
    assert reopened.interrupted == 0
    reopened.close()


def test_one_process_per_journal(tmp_path: Path) -> None:
    journal = WriteJournal(tmp_path / "writes.sqlite3")
    with pytest.raises(JournalBusy, match="in use by another gridctl process"):
        WriteJournal(tmp_path / "writes.sqlite3")
    journal.close()
    WriteJournal(tmp_path / "writes.sqlite3").close()


async def test_no_write_without_its_record(union: Site, tmp_path: Path) -> None:
    journal = WriteJournal(tmp_path / "writes.sqlite3")
    rig = Rig(union, ["charger-01"], journal=journal)
    # The journal's storage fails (a full or dead disk): nothing is sent, and operators are told.
    journal._conn.close()
    entry = await rig.write("charger-01/current-limit", 16.0)
    assert entry is not None and entry.outcome == Outcome.FAILED and "not sent" in (entry.error or "")
    assert rig.drivers["charger-01"].writes == []
    assert rig.alarms.is_active(AlarmKind.JOURNAL_FAILED, union.id)


async def test_the_journal_is_capped_without_dropping_what_is_not_shipped(union: Site, tmp_path: Path) -> None:
    path = tmp_path / "writes.sqlite3"
    journal = WriteJournal(path, max_records=20)
    rig = Rig(union, ["charger-01"], journal=journal)
    address = "charger-01/current-limit"

    def intent(action: Action, value: float | None) -> Intent:
        return Intent(ts=rig.clock.now(), site_id=union.id, address=address, action=action, actor="test",
                      reason="cap", unit="A", written_value=value)

    for n in range(15):
        await journal.note(intent(Action.WRITE, float(n)), Outcome.WRITTEN)
    await journal.mark_shipped(journal.pending(100).last_seq)
    # Past the cap the oldest shipped records go; every unshipped one stays.
    for n in range(15):
        await journal.note(intent(Action.WRITE, 100.0 + n), Outcome.WRITTEN)
    with sqlite3.connect(path) as conn:
        kept = [row[0] for row in conn.execute("SELECT written_value FROM records ORDER BY seq")]
    assert len(kept) <= 20 and kept[-15:] == [str(100.0 + n) for n in range(15)]
    # Unshipped records fill it: no new write is journalled, so none is sent, and operators are told.
    for n in range(5):
        await journal.note(intent(Action.WRITE, 200.0 + n), Outcome.WRITTEN)
    with pytest.raises(JournalFull, match="not yet shipped"):
        await journal.note(intent(Action.WRITE, 300.0), Outcome.WRITTEN)
    entry = await rig.write(address, 16.0)
    assert entry is not None and entry.outcome == Outcome.FAILED and "not sent" in (entry.error or "")
    assert rig.drivers["charger-01"].writes == []
    assert rig.alarms.is_active(AlarmKind.JOURNAL_FAILED, union.id)
    # Letting go still has a small reserve; and once shipped, writes are journalled again.
    await journal.note(intent(Action.RELINQUISH, None), Outcome.RELINQUISHED)
    assert journal.backlog() == 21
    await journal.mark_shipped(journal.pending(100).last_seq)
    rig.clock.advance(60)
    assert (await rig.write(address, 18.0)).outcome == Outcome.WRITTEN
    journal.close()
    # Reopened, it counts what the file holds and prunes from there.
    reopened = WriteJournal(path, max_records=20)
    for n in range(30):
        await reopened.note(intent(Action.WRITE, 400.0 + n), Outcome.WRITTEN)
        await reopened.mark_shipped(reopened.pending(100).last_seq)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] <= 20
    reopened.close()


async def test_relinquishing_clears_what_is_held_and_overrides_keep_it(union: Site, tmp_path: Path) -> None:
    journal = WriteJournal(tmp_path / "writes.sqlite3")
    rig = Rig(union, ["offices-ahu", "charger-01"], journal=journal)
    await rig.write("offices-ahu/zone-setpoint", 21.0)
    await rig.write("charger-01/current-limit", 16.0)
    assert {c.address for c in journal.commanded(union.id)} == {"offices-ahu/zone-setpoint",
                                                                "charger-01/current-limit"}
    # An operator at priority 8: our value stays in slot 10 underneath, so it still counts as held.
    rig.devices["offices-ahu"].write("zone-setpoint", 19.0, priority=8)
    rig.clock.advance(120)
    assert (await rig.write("offices-ahu/zone-setpoint", 22.0)).outcome == Outcome.OVERRIDE
    assert "offices-ahu/zone-setpoint" in {c.address for c in journal.commanded(union.id)}
    released = await rig.arbiter.release_all()
    assert {e.outcome for e in released} == {Outcome.RELINQUISHED}
    assert rig.devices["offices-ahu"].priority_array("zone-setpoint")[9] is None
    assert journal.commanded(union.id) == []
    journal.close()


async def test_the_old_value_is_the_last_reading_unless_gridctl_wrote_since(union: Site, tmp_path: Path) -> None:
    rig = Rig(union, ["charger-01"])
    readings: dict[str, Reading] = {}
    rig.arbiter.reading = readings.get
    address = "charger-01/current-limit"
    readings[address] = Reading(address, START - timedelta(seconds=5), 10.0, Quality.GOOD)
    first = await rig.write(address, 16.0)
    assert first is not None and first.old_value == 10.0
    rig.clock.advance(30)
    # The last reading is older than our write: what we wrote is the better guess.
    second = await rig.write(address, 20.0)
    assert second is not None and second.old_value == 16.0
    # A fresher reading says what the charger really had (a local change, a fallback after a lease).
    readings[address] = Reading(address, rig.clock.now() + timedelta(seconds=1), 6.0, Quality.GOOD)
    rig.clock.advance(30)
    third = await rig.write(address, 24.0)
    assert third is not None and third.old_value == 6.0


async def test_no_write_is_lost_when_the_audit_sink_is_memory_only(union: Site) -> None:
    # Without a journal (closed-loop simulation) the arbiter still audits in memory, unnumbered.
    rig = Rig(union, ["charger-01"])
    entry = await rig.arbiter.write(WriteRequest("charger-01/current-limit", 16.0, "optimizer", "plan"))
    assert entry is not None and entry.journal_seq is None and entry.instance_id is None
    assert list(rig.audit.entries) == [entry]
