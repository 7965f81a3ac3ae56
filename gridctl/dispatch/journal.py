"""The local, durable journal of every write to equipment: the intent before it is sent, the outcome after.

A SQLite file (WAL, `synchronous = FULL`): once `intent` returns, the record survives a crash of the
process and of the machine, so no device is written without a trace, whatever the history database
does. The outcome (written, failed, relinquished, ...) completes the same record after the I/O; an
intent a crashed run never completed is closed as `interrupted` when the journal is next opened.

Besides the log, the journal keeps two small tables of state, updated in the same transactions:
what gridctl may hold on each device (every value sent and not relinquished since, so a restart knows
what a crashed run left commanded) and each site's hands-off scopes (restored before the first write).

Records carry a sequence number unique within this journal; with the instance id (host name and an id
made when the journal file was created) it is the key that makes shipping to the database exactly-once.

The file is capped (`max_records`): past the cap the oldest shipped records are pruned (the database
has them). Records not yet shipped are never dropped: when they alone fill the journal, new writes are
refused (JournalFull) and the devices' own fallbacks act until the database takes the backlog; letting go
of a device (a relinquish, a note, a hands off) may still use a small reserve above the cap.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from drivers.base import Value
from gridctl.dispatch.audit import AuditEntry, Outcome
from gridctl.history.timebuckets import from_us, to_us

log = logging.getLogger(__name__)

FORMAT = 1
# Fault injection for the crash tests: "after-intent[:<address>]" or "after-write[:<address>]" makes the
# process kill itself (SIGKILL) at that instant of the first matching write. Read once per journal.
FAULT_ENV = "GRIDCTL_JOURNAL_FAULT"
INTERRUPTED_ERROR = "the process stopped between the intent and the outcome: the device may or may not hold the value"
CUT_SHORT_ERROR = "the write was cut short by the service's stop: the device may or may not hold the value"


class JournalError(Exception):
    """The journal could not be written: the write it was meant to record must not be sent."""


class JournalBusy(JournalError):
    """Another gridctl process holds this journal (one journal per data directory and process)."""


class JournalFull(JournalError):
    """Records not yet shipped fill the journal: nothing more may be sent until the database takes them."""


# Records a journal keeps at most: at a write every few seconds on a hundred points, days of a database
# outage. Shipped records beyond it are pruned oldest first.
MAX_RECORDS = 500_000


class Action(StrEnum):
    WRITE = "write"  # a value sent to a device
    HEARTBEAT = "heartbeat"  # a watchdog heartbeat: sent, but it commands nothing
    RELINQUISH = "relinquish"  # letting go: NULL at our BACnet priority, or the point's relinquish value
    NOTE = "note"  # audited without any I/O: rejected, override, a lease left to expire, a reclaimed point
    HANDS_OFF = "hands_off"
    HANDS_ON = "hands_on"


@dataclass(frozen=True, slots=True)
class Intent:
    """What gridctl is about to do to one point, recorded before any byte goes to the device."""

    ts: datetime
    site_id: str
    address: str
    action: Action
    actor: str
    reason: str
    unit: str
    schedule_id: str | None = None
    policy_version: int | None = None
    old_value: Value | None = None
    requested_value: Value | None = None
    written_value: Value | None = None
    priority: int | None = None
    clamped: bool = False
    ramped: bool = False
    # The fencing epoch of the site lease the write was made under (None until site leases exist).
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class HandsOff:
    scope: str
    actor: str
    reason: str
    since: datetime


@dataclass(frozen=True, slots=True)
class HandsEvent:
    """A hands-off or hands-on as shipped to the database."""

    seq: int
    instance_id: str
    site_id: str
    scope: str
    on: bool  # True: hands on (gridctl commands the scope again)
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Commanded:
    """A point gridctl sent a value to and has not relinquished since."""

    site_id: str
    address: str
    value: Value | None
    priority: int | None
    seq: int
    ts: datetime
    run_id: str
    # Who held it, when another instance did (a site taken over): instance and lease epoch, in words.
    held_by: str | None = None


@dataclass
class Pending:
    """Records to ship, in order; `last_seq` acknowledges them all."""

    records: list[AuditEntry | HandsEvent]
    last_seq: int


@dataclass(frozen=True)
class Fault:
    """Where a crash test wants the process to die."""

    instant: str  # "after-intent" | "after-write"
    address: str | None

    @classmethod
    def parse(cls, text: str | None) -> Fault | None:
        if not text:
            return None
        instant, _, address = text.partition(":")
        if instant not in ("after-intent", "after-write"):
            raise ValueError(f"{FAULT_ENV} must be after-intent[:<address>] or after-write[:<address>], not {text!r}")
        return cls(instant, address or None)

    def hit(self, instant: str, address: str) -> None:
        if instant == self.instant and self.address in (None, address):
            log.warning("fault injection: killing the process %s of %s", instant, address)
            os.kill(os.getpid(), signal.SIGKILL)


_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # ts, outcome_ts: microseconds since the epoch (UTC); values as JSON.
    """CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        action TEXT NOT NULL,
        site_id TEXT NOT NULL,
        address TEXT NOT NULL,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        unit TEXT NOT NULL,
        schedule_id TEXT,
        policy_version INTEGER,
        old_value TEXT,
        requested_value TEXT,
        written_value TEXT,
        priority INTEGER,
        clamped INTEGER NOT NULL,
        ramped INTEGER NOT NULL,
        epoch INTEGER,
        outcome TEXT,
        outcome_ts INTEGER,
        read_back TEXT,
        error TEXT,
        lease_until INTEGER,
        shipped INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS records_unshipped ON records (seq) WHERE shipped = 0",
    """CREATE TABLE IF NOT EXISTS commanded (
        site_id TEXT NOT NULL,
        address TEXT NOT NULL,
        value TEXT,
        priority INTEGER,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        PRIMARY KEY (site_id, address)
    )""",
    """CREATE TABLE IF NOT EXISTS hands_off (
        site_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (site_id, scope)
    )""",
]

_RECORD_COLUMNS = ("seq, run_id, action, site_id, address, ts, actor, reason, unit, schedule_id, policy_version, "
                   "old_value, requested_value, written_value, priority, clamped, ramped, epoch, outcome, "
                   "outcome_ts, read_back, error, lease_until")


class WriteJournal:
    """The journal file of one data directory, held by one process at a time."""

    def __init__(self, path: str | Path, *, hostname: str | None = None, fault: Fault | None = None,
                 max_records: int = MAX_RECORDS, lock_wait_s: float = 0.0) -> None:
        if max_records < 10:
            raise ValueError(f"a write journal keeps at least 10 records, not {max_records}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self._lock_file = self._take_lock(self.path.with_name(self.path.name + ".lock"), lock_wait_s)
        self.fault = fault if fault is not None else Fault.parse(os.environ.get(FAULT_ENV))
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        for statement in _SCHEMA:
            self._conn.execute(statement)
        self._meta("format", str(FORMAT))
        # Made with the file and kept in it: stable across restarts (even of a renamed host), and a new
        # file is a new instance, so its sequence numbers never collide with an old file's in the database.
        self.instance_id = self._meta("instance_id", f"{hostname or socket.gethostname()}/{uuid.uuid4().hex[:12]}")
        self.run_id = uuid.uuid4().hex[:12]
        self.on_record: Callable[[], None] | None = None
        self.interrupted = self._close_interrupted()
        self._count = self._conn.execute("SELECT count(*) FROM records").fetchone()[0]

    @staticmethod
    def _take_lock(path: Path, wait_s: float) -> Any:
        handle = path.open("a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                handle.seek(0)
                holder = handle.read().strip() or "?"
                handle.close()
                raise JournalBusy(f"the write journal {path.with_suffix('')} is in use by another gridctl process "
                                  f"(pid {holder}); give each process its own GRIDCTL_DATA_DIR") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _meta(self, key: str, default: str) -> str:
        self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", [key, default])
        return self._conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()[0]

    def _close_interrupted(self) -> int:
        """Close the intents a previous run never completed: they are shipped as `interrupted`."""
        closed = self._close_open(INTERRUPTED_ERROR)
        if closed:
            log.warning("write journal: %d write(s) of a run that stopped abruptly have no outcome; recorded as %s",
                        closed, Outcome.INTERRUPTED)
        return closed

    def _close_open(self, error: str) -> int:
        now = to_us(datetime.now(UTC))
        cursor = self._conn.execute("UPDATE records SET outcome = ?, outcome_ts = ?, error = ? WHERE outcome IS NULL",
                                    [str(Outcome.INTERRUPTED), now, error])
        return cursor.rowcount

    async def close_open(self) -> int:
        """At a clean stop, once nothing writes any more: close an intent whose write was cut short (a
        cancellation that reached it between intent and outcome), so it ships now, not at the next start."""
        closed = await self._run(self._close_open, CUT_SHORT_ERROR)
        if closed:
            log.warning("write journal: %d write(s) cut short by the stop; recorded as %s", closed,
                        Outcome.INTERRUPTED)
            self._notify()
        return closed

    # ------------------------------------------------------------------ recording

    async def intent(self, intent: Intent) -> int:
        """Record what is about to be sent, durably; returns its sequence number. Raises JournalError."""
        seq = await self._run(self._insert, intent, None)
        if self.fault is not None:
            self.fault.hit("after-intent", intent.address)
        return seq

    async def outcome(self, seq: int, address: str, outcome: Outcome, ts: datetime, *, read_back: Value | None = None,
                      error: str | None = None, lease_until: datetime | None = None,
                      carried: tuple[Value | None, int | None] | None = None) -> None:
        """Complete a record after the I/O; `carried`: the value and priority the device was really sent, when
        the driver made them differ from the intent's. Raises JournalError."""
        if self.fault is not None:
            self.fault.hit("after-write", address)
        await self._run(self._complete, seq, outcome, ts, read_back, error, lease_until, carried)
        self._notify()

    async def note(self, intent: Intent, outcome: Outcome, *, error: str | None = None) -> int:
        """Record something done without I/O (refused, overridden, a lease left to expire, reclaimed)."""
        seq = await self._run(self._insert, intent, (outcome, error))
        self._notify()
        return seq

    async def hands(self, site_id: str, scope: str, *, on: bool, actor: str, reason: str, ts: datetime) -> int:
        """Record a hands off (or on) and make it the site's state, in one transaction."""
        seq = await self._run(self._hands, site_id, scope, on, actor, reason, ts)
        self._notify()
        return seq

    def _notify(self) -> None:
        if self.on_record is not None:
            self.on_record()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(self._locked, fn, *args)
        except sqlite3.Error as error:
            raise JournalError(f"write journal {self.path}: {error}") from error

    def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(*args)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                # What the transaction pruned is back.
                self._count = self._conn.execute("SELECT count(*) FROM records").fetchone()[0]
                raise
            return result

    def _make_room(self, action: Action) -> None:
        """Prune the oldest shipped records past the cap; raise JournalFull when unshipped ones fill it."""
        if self._count < self.max_records:
            return
        # A tenth pruned at once: the cap is not met again at the very next record.
        excess = self._count - self.max_records + max(1, self.max_records // 10)
        cursor = self._conn.execute(
            "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE shipped = 1 ORDER BY seq LIMIT ?)",
            [excess])
        self._count -= cursor.rowcount
        if cursor.rowcount:
            log.info("write journal: pruned the %d oldest shipped record(s) (cap %d)", cursor.rowcount,
                     self.max_records)
        # Letting go of equipment may use a reserve above the cap; sending it something new may not.
        reserve = 0 if action in (Action.WRITE, Action.HEARTBEAT) else max(10, self.max_records // 100)
        if self._count >= self.max_records + reserve:
            raise JournalFull(f"the write journal {self.path} holds {self._count} records not yet shipped to the "
                              f"database (cap {self.max_records}); nothing more is sent to devices until the "
                              "database takes them")

    def _insert(self, intent: Intent, done: tuple[Outcome, str | None] | None) -> int:
        self._make_room(intent.action)
        outcome, error = done if done is not None else (None, None)
        ts = to_us(intent.ts)
        cursor = self._conn.execute(
            "INSERT INTO records (run_id, action, site_id, address, ts, actor, reason, unit, schedule_id, "
            "policy_version, old_value, requested_value, written_value, priority, clamped, ramped, epoch, outcome, "
            "outcome_ts, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self.run_id, str(intent.action), intent.site_id, intent.address, ts, intent.actor, intent.reason,
             intent.unit, intent.schedule_id, intent.policy_version, _dump(intent.old_value),
             _dump(intent.requested_value), _dump(intent.written_value), intent.priority, int(intent.clamped),
             int(intent.ramped), intent.epoch, None if outcome is None else str(outcome),
             None if outcome is None else ts, error])
        seq = int(cursor.lastrowid or 0)
        self._count += 1
        if intent.action is Action.WRITE:
            # Held from the moment it may reach the device, until relinquished.
            self._conn.execute(
                "INSERT OR REPLACE INTO commanded (site_id, address, value, priority, seq, ts, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [intent.site_id, intent.address, _dump(intent.written_value), intent.priority, seq, ts, self.run_id])
        elif intent.action is Action.NOTE and outcome is Outcome.RELINQUISHED:
            self._forget(intent.site_id, intent.address)
        return seq

    def _complete(self, seq: int, outcome: Outcome, ts: datetime, read_back: Value | None, error: str | None,
                  lease_until: datetime | None, carried: tuple[Value | None, int | None] | None = None) -> None:
        row = self._conn.execute("SELECT action, site_id, address FROM records WHERE seq = ?", [seq]).fetchone()
        if row is None:
            raise sqlite3.IntegrityError(f"no journal record {seq}")
        if carried is not None:
            self._conn.execute("UPDATE records SET written_value = ?, priority = ? WHERE seq = ?",
                               [_dump(carried[0]), carried[1], seq])
        self._conn.execute(
            "UPDATE records SET outcome = ?, outcome_ts = ?, read_back = ?, error = ?, lease_until = ? WHERE seq = ?",
            [str(outcome), to_us(ts), _dump(read_back), error, None if lease_until is None else to_us(lease_until),
             seq])
        if row[0] == Action.RELINQUISH and outcome is Outcome.RELINQUISHED:
            self._forget(row[1], row[2])

    def _forget(self, site_id: str, address: str) -> None:
        self._conn.execute("DELETE FROM commanded WHERE site_id = ? AND address = ?", [site_id, address])

    def _hands(self, site_id: str, scope: str, on: bool, actor: str, reason: str, ts: datetime) -> int:
        action = Action.HANDS_ON if on else Action.HANDS_OFF
        self._make_room(action)
        cursor = self._conn.execute(
            "INSERT INTO records (run_id, action, site_id, address, ts, actor, reason, unit, clamped, ramped, "
            "outcome, outcome_ts) VALUES (?, ?, ?, ?, ?, ?, ?, '', 0, 0, ?, ?)",
            [self.run_id, str(action), site_id, scope, to_us(ts), actor, reason, str(action), to_us(ts)])
        self._count += 1
        if on:
            self._conn.execute("DELETE FROM hands_off WHERE site_id = ? AND scope = ?", [site_id, scope])
        else:
            self._put_hands_off(site_id, HandsOff(scope, actor, reason, ts))
        return int(cursor.lastrowid or 0)

    def _put_hands_off(self, site_id: str, hands: HandsOff) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO hands_off (site_id, scope, actor, reason, since) VALUES (?, ?, ?, ?, ?)",
            [site_id, hands.scope, hands.actor, hands.reason, to_us(hands.since)])

    # ------------------------------------------------------------------ state

    def hands_off(self, site_id: str) -> dict[str, HandsOff]:
        """The site's hands-off scopes as last recorded here."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT scope, actor, reason, since FROM hands_off WHERE site_id = ? ORDER BY since", [site_id]
            ).fetchall()
        return {scope: HandsOff(scope, actor, reason, from_us(since)) for scope, actor, reason, since in rows}

    async def adopt_hands_off(self, site_id: str, hands: HandsOff) -> None:
        """Keep a hands off found in the database (it is already there: not shipped again)."""
        await self._run(self._put_hands_off, site_id, hands)

    def commanded(self, site_id: str) -> list[Commanded]:
        """Points gridctl sent a value to and has not relinquished since, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT site_id, address, value, priority, seq, ts, run_id FROM commanded WHERE site_id = ? "
                "ORDER BY seq", [site_id]).fetchall()
        return [Commanded(s, a, _load(v), p, seq, from_us(ts), run) for s, a, v, p, seq, ts, run in rows]

    def last_written(self, site_id: str, address: str) -> Value | None:
        """The value gridctl last sent to a point it still holds (None when it holds none)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM commanded WHERE site_id = ? AND address = ?",
                                     [site_id, address]).fetchone()
        return None if row is None else _load(row[0])

    async def replace_hands_off(self, site_id: str, scopes: Iterable[HandsOff]) -> None:
        """Make the site's hands off exactly `scopes` (taken from the shared database), recording no change."""
        def replace(hands: list[HandsOff]) -> None:
            self._conn.execute("DELETE FROM hands_off WHERE site_id = ?", [site_id])
            for one in hands:
                self._put_hands_off(site_id, one)
        await self._run(replace, list(scopes))

    async def replace_commanded(self, site_id: str, held: Iterable[Commanded]) -> None:
        """Make what this journal counts as held on the site exactly `held` (a site taken over from another
        instance: what its audit says it held), recording no change."""
        def replace(rows: list[Commanded]) -> None:
            self._conn.execute("DELETE FROM commanded WHERE site_id = ?", [site_id])
            self._conn.executemany(
                "INSERT INTO commanded (site_id, address, value, priority, seq, ts, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(site_id, c.address, _dump(c.value), c.priority, c.seq, to_us(c.ts), c.run_id) for c in rows])
        await self._run(replace, list(held))

    async def forget(self, site_id: str, address: str) -> None:
        """Stop counting a point as held without I/O (it is no longer in the site description)."""
        await self._run(self._forget, site_id, address)

    # ------------------------------------------------------------------ shipping

    def pending(self, limit: int) -> Pending:
        """The oldest records not yet shipped, in order, up to (not including) the first still in flight."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE shipped = 0 ORDER BY seq LIMIT ?", [limit]).fetchall()
        out = Pending([], 0)
        for row in rows:
            if row[18] is None:
                break
            out.records.append(self._shipped_form(row))
            out.last_seq = row[0]
        return out

    def backlog(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM records WHERE shipped = 0").fetchone()[0]

    async def mark_shipped(self, last_seq: int) -> None:
        """Every record up to `last_seq` is in the database (call after its commit)."""
        await self._run(lambda: self._conn.execute(
            "UPDATE records SET shipped = 1 WHERE seq <= ? AND shipped = 0 AND outcome IS NOT NULL", [last_seq]))

    async def prune(self, before: datetime) -> int:
        """Forget shipped records older than `before` (the database keeps them)."""
        cursor = await self._run(lambda: self._conn.execute(
            "DELETE FROM records WHERE shipped = 1 AND ts < ?", [to_us(before)]))
        with self._lock:
            self._count -= cursor.rowcount
        return cursor.rowcount

    def _shipped_form(self, row: tuple[Any, ...]) -> AuditEntry | HandsEvent:
        (seq, _run, action, site_id, address, ts, actor, reason, unit, schedule_id, policy_version, old, requested,
         written, priority, clamped, ramped, epoch, outcome, outcome_ts, read_back, error, lease_until) = row
        if action in (Action.HANDS_OFF, Action.HANDS_ON):
            return HandsEvent(seq, self.instance_id, site_id, address, action == Action.HANDS_ON, actor, reason,
                              from_us(ts))
        return AuditEntry(
            ts=from_us(ts), site_id=site_id, address=address, actor=actor, reason=reason, schedule_id=schedule_id,
            policy_version=policy_version, old_value=_load(old), requested_value=_load(requested),
            written_value=_load(written), priority=priority,
            lease_until=None if lease_until is None else from_us(lease_until), outcome=Outcome(outcome),
            read_back=_load(read_back), error=error, clamped=bool(clamped), ramped=bool(ramped), unit=unit,
            instance_id=self.instance_id, journal_seq=seq, epoch=epoch, outcome_at=from_us(outcome_ts), action=action)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        self._lock_file.close()


def _dump(value: Value | None) -> str | None:
    return None if value is None else json.dumps(value)


def _load(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)
