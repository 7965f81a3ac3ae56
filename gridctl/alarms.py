"""Alarms the service raises for operators: raised once, cleared when the cause goes away."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class AlarmKind(StrEnum):
    DEVICE_OFFLINE = "device_offline"
    STALE_POINT = "stale_point"
    WRITE_MISMATCH = "write_mismatch"
    OVERRIDE = "override"
    COMFORT_VIOLATION = "comfort_violation"
    SPOOL_FILLING = "spool_filling"
    # The history database does not take readings: they wait in the local spool.
    HISTORY_UNAVAILABLE = "history_unavailable"
    OPTIMIZER_FAILED = "optimizer_failed"
    # A stored policy version or demand-response event no longer validates; an earlier one is in force.
    POLICY_INVALID = "policy_invalid"
    WEATHER_PROVIDER = "weather_provider"
    # The local write journal cannot be written: writes are refused (no write without its record).
    JOURNAL_FAILED = "journal_failed"
    # Several instances share the site and none has published its live values lately: nobody controls
    # it (its owner died or lost the database), until another instance takes it over.
    SITE_UNCONTROLLED = "site_uncontrolled"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Alarm:
    kind: AlarmKind
    # What the alarm is about: a point address, a device id, an asset id or the site id.
    subject: str
    message: str
    severity: Severity
    raised_at: datetime
    cleared_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None

    @property
    def key(self) -> tuple[AlarmKind, str]:
        return (self.kind, self.subject)

    @property
    def active(self) -> bool:
        return self.cleared_at is None


AlarmListener = Callable[[Alarm], None]


class AlarmBook:
    """The site's alarms. One active alarm per (kind, subject); listeners see every change."""

    def __init__(self, history_size: int = 1000) -> None:
        self._active: dict[tuple[AlarmKind, str], Alarm] = {}
        # Cleared alarms, newest last; bounded so a long-running service does not grow.
        self._history: deque[Alarm] = deque(maxlen=history_size)
        self._listeners: list[AlarmListener] = []

    @classmethod
    def of(cls, active: list[Alarm], history: list[Alarm]) -> AlarmBook:
        """A book holding these alarms (another instance's, as it published them)."""
        book = cls()
        book._active = {a.key: a for a in active}
        book._history.extend(history)
        return book

    def subscribe(self, listener: AlarmListener) -> None:
        self._listeners.append(listener)

    def raise_alarm(self, kind: AlarmKind, subject: str, message: str, now: datetime,
                    severity: Severity = Severity.WARNING) -> Alarm:
        existing = self._active.get((kind, subject))
        if existing is not None:
            return existing
        alarm = Alarm(kind, subject, message, severity, now)
        self._active[alarm.key] = alarm
        self._notify(alarm)
        return alarm

    def clear(self, kind: AlarmKind, subject: str, now: datetime) -> Alarm | None:
        alarm = self._active.pop((kind, subject), None)
        if alarm is None:
            return None
        cleared = replace(alarm, cleared_at=now)
        self._history.append(cleared)
        self._notify(cleared)
        return cleared

    def acknowledge(self, kind: AlarmKind, subject: str, who: str, now: datetime) -> Alarm:
        alarm = self._active[(kind, subject)]
        acknowledged = replace(alarm, acknowledged_by=who, acknowledged_at=now)
        self._active[alarm.key] = acknowledged
        self._notify(acknowledged)
        return acknowledged

    def is_active(self, kind: AlarmKind, subject: str) -> bool:
        return (kind, subject) in self._active

    def active(self) -> list[Alarm]:
        return sorted(self._active.values(), key=lambda a: a.raised_at)

    def history(self) -> list[Alarm]:
        return list(self._history)

    def _notify(self, alarm: Alarm) -> None:
        for listener in self._listeners:
            listener(alarm)
