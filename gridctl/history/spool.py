"""A durable, bounded, first-in-first-out store of readings on local disk.

Readings wait here while the database is away. It is a SQLite file with `synchronous = FULL`: once
`append` returns the readings survive a crash of the process and of the machine. Each appended batch
keeps its site and its receive time, so that timestamps are judged against when a reading arrived,
not when it was finally flushed.

A spool written by a version that kept no site is upgraded on opening: each reading goes to the one
site the service runs that has its address; a reading no single site claims keeps no site, and the
historian quarantines it when it is flushed (nothing is dropped, nothing is filed under a guess).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drivers.base import Quality, Reading
from gridctl.history.timebuckets import from_us, to_us

log = logging.getLogger(__name__)
# PRAGMA user_version of a spool whose rows carry their site.
FORMAT = 2


class SpoolFull(Exception):
    """The spool is at capacity: the readings were not kept."""


@dataclass(frozen=True, slots=True)
class SpoolAlarm:
    """Raised when the spool fills past the alarm level, cleared when it falls back below it."""

    active: bool
    count: int
    capacity: int
    # Readings refused because the spool was full, since the spool was opened.
    refused: int = 0

    @property
    def fill_ratio(self) -> float:
        return self.count / self.capacity


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """Consecutive spooled readings of one site that arrived together; `last_seq` acknowledges them.
    A site of None: an older spool's readings that no site the service runs could claim."""

    received_at: datetime
    site_id: str | None
    readings: list[Reading]
    last_seq: int


class Spool:
    def __init__(
        self,
        path: str | Path,
        capacity: int = 2_000_000,
        *,
        alarm_ratio: float = 0.9,
        on_alarm: Callable[[SpoolAlarm], None] | None = None,
        sites: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """`sites`: the addresses of each site the service runs, to attribute the readings of a spool
        written by an older version."""
        if capacity <= 0 or not 0 < alarm_ratio <= 1:
            raise ValueError("capacity must be positive and alarm_ratio in (0, 1]")
        self.path = Path(path)
        self.capacity = capacity
        self.alarm_level = max(1, int(capacity * alarm_ratio))
        self.on_alarm = on_alarm
        self.refused = 0
        self._alarm_active = False
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._open_table(sites or {})
        self._counts: Counter[str | None] = Counter(dict(
            self._conn.execute("SELECT site_id, count(*) FROM spool GROUP BY site_id").fetchall()))
        self._count = sum(self._counts.values())
        # A spool that reopens above the alarm level says so at once.
        self._check_alarm()

    def _open_table(self, sites: Mapping[str, Iterable[str]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(spool)")]
            if not columns:
                conn.execute(
                    "CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at INTEGER NOT NULL, "
                    "site_id TEXT, address TEXT NOT NULL, ts INTEGER NOT NULL, value, quality TEXT NOT NULL, "
                    "error TEXT)"
                )
            elif "site_id" not in columns:
                self._attribute_legacy_rows(sites)
            conn.execute(f"PRAGMA user_version = {FORMAT}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _attribute_legacy_rows(self, sites: Mapping[str, Iterable[str]]) -> None:
        claimants: dict[str, set[str]] = {}
        for site_id, addresses in sites.items():
            for address in addresses:
                claimants.setdefault(address, set()).add(site_id)
        conn = self._conn
        conn.execute("ALTER TABLE spool ADD COLUMN site_id TEXT")
        spooled = dict(conn.execute("SELECT address, count(*) FROM spool GROUP BY address").fetchall())
        owners = [(next(iter(c)), a) for a in spooled if len(c := claimants.get(a, set())) == 1]
        conn.executemany("UPDATE spool SET site_id = ? WHERE address = ?", owners)
        attributed = {a for _, a in owners}
        orphans = {a: n for a, n in spooled.items() if a not in attributed}
        log.warning("spool %s was written without sites: %d readings attributed to the sites that have their "
                    "points, %d of %d points claimed by no single site (%s) go to the history's quarantine",
                    self.path, sum(spooled[a] for a in attributed), sum(orphans.values()), len(spooled),
                    ", ".join(sorted(orphans)[:10]) or "none")

    def __len__(self) -> int:
        return self._count

    def count(self, site_id: str | None) -> int:
        """Readings of one site waiting (None: those of no known site)."""
        return self._counts.get(site_id, 0)

    def append(self, site_id: str, readings: Sequence[Reading], received_at: datetime) -> None:
        """Keep readings durably; all or nothing. Raises SpoolFull when they do not fit."""
        (refused,) = self.append_groups([(site_id, readings, received_at)])
        if refused is not None:
            raise refused

    def append_groups(self, groups: Sequence[tuple[str | None, Sequence[Reading], datetime]]
                      ) -> list[SpoolFull | None]:
        """Keep several sites' polls durably in one transaction, in order; each group all or nothing.
        Returns, per group, None when kept or the SpoolFull that refused it (those that fit are kept)."""
        outcome: list[SpoolFull | None] = []
        alarm = None
        with self._lock:
            rows: list[tuple] = []
            added: Counter[str | None] = Counter()
            count = self._count
            for site_id, readings, received_at in groups:
                if count + len(readings) > self.capacity:
                    self.refused += len(readings)
                    alarm = SpoolAlarm(True, count, self.capacity, self.refused)
                    outcome.append(SpoolFull(f"spool {self.path} holds {count} of {self.capacity} readings"))
                    continue
                received_us = to_us(received_at)
                rows.extend((received_us, site_id, r.address, to_us(r.ts), r.value, str(r.quality), r.error)
                            for r in readings)
                count += len(readings)
                added[site_id] += len(readings)
                outcome.append(None)
            if rows:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT INTO spool (received_at, site_id, address, ts, value, quality, error) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._count = count
                self._counts.update(added)
        if alarm is not None and self.on_alarm:
            self.on_alarm(alarm)
        self._check_alarm()
        return outcome

    def peek(self, limit: int) -> list[SpooledBatch]:
        """The oldest readings (at most `limit`), grouped by site and receive time, in the order they came."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, received_at, site_id, address, ts, value, quality, error FROM spool ORDER BY seq LIMIT ?",
                [limit],
            ).fetchall()
        batches: list[SpooledBatch] = []
        for seq, received_us, site_id, address, ts, value, quality, error in rows:
            reading = Reading(address, from_us(ts), value, Quality(quality), error)
            received_at = from_us(received_us)
            last = batches[-1] if batches else None
            if last is not None and last.received_at == received_at and last.site_id == site_id:
                last.readings.append(reading)
                batches[-1] = SpooledBatch(received_at, site_id, last.readings, seq)
            else:
                batches.append(SpooledBatch(received_at, site_id, [reading], seq))
        return batches

    def ack(self, last_seq: int) -> None:
        """Forget every reading up to `last_seq`: they are stored in the database."""
        with self._lock:
            self._conn.execute("DELETE FROM spool WHERE seq <= ?", [last_seq])
            self._counts = Counter(dict(
                self._conn.execute("SELECT site_id, count(*) FROM spool GROUP BY site_id").fetchall()))
            self._count = sum(self._counts.values())
        self._check_alarm()

    def _check_alarm(self) -> None:
        active = self._count >= self.alarm_level
        if active != self._alarm_active:
            self._alarm_active = active
            if self.on_alarm:
                self.on_alarm(SpoolAlarm(active, self._count, self.capacity, self.refused))

    @property
    def alarm_active(self) -> bool:
        return self._alarm_active

    def close(self) -> None:
        with self._lock:
            self._conn.close()
