"""The audit record of every write to equipment: when, who or what, why, old and new, result."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from drivers.base import Value


class Outcome(StrEnum):
    WRITTEN = "written"
    RENEWED = "renewed"  # the same value re-sent to keep a lease alive
    RELINQUISHED = "relinquished"
    OVERRIDE = "override"  # not written: a higher priority or local mode holds the point
    MISMATCH = "mismatch"  # written, but the read-back differs
    REJECTED = "rejected"  # refused before any I/O
    FAILED = "failed"  # the device did not take it (timeout, exception, ...)
    # The process stopped (crash, kill, power cut) after journalling the intent, before the outcome:
    # the device may or may not hold the value.
    INTERRUPTED = "interrupted"
    # Not written: at start, gridctl takes back a point a stopped run left commanded; the next dispatch
    # writes it.
    RECLAIMED = "reclaimed"
    # Site leases (several gridctl instances sharing sites), audited against the whole site (address
    # `site`): this instance took the site over, handed it to another one, or stopped commanding it because
    # its lease could not be renewed in time (the devices' own fallbacks act).
    TAKEN_OVER = "taken_over"
    HANDED_OVER = "handed_over"
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: datetime
    site_id: str
    address: str
    actor: str
    reason: str
    schedule_id: str | None
    policy_version: int | None
    old_value: Value | None
    requested_value: Value | None
    written_value: Value | None
    priority: int | None
    lease_until: datetime | None
    outcome: Outcome
    read_back: Value | None
    error: str | None
    clamped: bool
    ramped: bool
    unit: str
    # Which gridctl wrote it (host name / data directory's journal id) and the record's number in that
    # journal: the key that ships each record to the database exactly once.
    instance_id: str | None = None
    journal_seq: int | None = None
    # The fencing epoch of the site lease the write was made under (None until site leases exist).
    epoch: int | None = None
    # When the outcome was known (`ts` is when the write was decided and journalled).
    outcome_at: datetime | None = None
    # What was done: "write", "heartbeat", "relinquish" (sent to the device) or "note" (no I/O).
    action: str | None = None


class AuditSink(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...


class MemoryAuditSink:
    """Keeps the latest entries in memory (the audit of a closed-loop simulation, and tests) and counts
    all of them by outcome. The durable audit is the database's; this one only shows the recent writes,
    so it stays small (a parking silo's chargers alone write a few thousand times a day)."""

    def __init__(self, keep: int = 1_000) -> None:
        self.entries: deque[AuditEntry] = deque(maxlen=keep)
        self.counts: Counter[Outcome] = Counter()

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)
        self.counts[entry.outcome] += 1
