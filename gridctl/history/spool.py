"""A durable, bounded, first-in-first-out store of readings on local disk.

Readings wait here while the database is away. It is a SQLite file with `synchronous = FULL`: once
`append` returns the readings survive a crash of the process and of the machine. Each appended batch
keeps its receive time, so that timestamps are judged against when a reading arrived, not when it
was finally flushed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drivers.base import Quality, Reading
from gridctl.history.timebuckets import from_us, to_us


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
    """Consecutive spooled readings that arrived together; `last_seq` acknowledges them."""

    received_at: datetime
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
    ) -> None:
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
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at INTEGER NOT NULL, "
            "address TEXT NOT NULL, ts INTEGER NOT NULL, value, quality TEXT NOT NULL, error TEXT)"
        )
        self._count = self._conn.execute("SELECT count(*) FROM spool").fetchone()[0]
        # A spool that reopens above the alarm level says so at once.
        self._check_alarm()

    def __len__(self) -> int:
        return self._count

    def append(self, readings: Sequence[Reading], received_at: datetime) -> None:
        """Keep readings durably; all or nothing. Raises SpoolFull when they do not fit."""
        if not readings:
            return
        with self._lock:
            if self._count + len(readings) > self.capacity:
                self.refused += len(readings)
                alarm = SpoolAlarm(True, self._count, self.capacity, self.refused)
            else:
                received_us = to_us(received_at)
                rows = [
                    (received_us, r.address, to_us(r.ts), r.value, str(r.quality), r.error) for r in readings
                ]
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT INTO spool (received_at, address, ts, value, quality, error) VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._count += len(rows)
                alarm = None
        if alarm is not None:
            if self.on_alarm:
                self.on_alarm(alarm)
            raise SpoolFull(f"spool {self.path} holds {alarm.count} of {self.capacity} readings")
        self._check_alarm()

    def peek(self, limit: int) -> list[SpooledBatch]:
        """The oldest readings (at most `limit`), grouped by receive time, in the order they came."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, received_at, address, ts, value, quality, error FROM spool ORDER BY seq LIMIT ?", [limit]
            ).fetchall()
        batches: list[SpooledBatch] = []
        for seq, received_us, address, ts, value, quality, error in rows:
            reading = Reading(address, from_us(ts), value, Quality(quality), error)
            if batches and batches[-1].received_at == from_us(received_us):
                batches[-1].readings.append(reading)
                batches[-1] = SpooledBatch(batches[-1].received_at, batches[-1].readings, seq)
            else:
                batches.append(SpooledBatch(from_us(received_us), [reading], seq))
        return batches

    def ack(self, last_seq: int) -> None:
        """Forget every reading up to `last_seq`: they are stored in the database."""
        with self._lock:
            self._conn.execute("DELETE FROM spool WHERE seq <= ?", [last_seq])
            self._count = self._conn.execute("SELECT count(*) FROM spool").fetchone()[0]
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
