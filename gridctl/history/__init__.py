"""Point history: readings, rollups, retention and queries over TimescaleDB or an embedded SQLite file,
with a durable local spool that keeps readings while the database is away. A point is known by its
site and its address within the site."""

from __future__ import annotations

from typing import Any

from gridctl.history.base import (
    Aggregate,
    EnergyResolution,
    Historian,
    HistorianUnavailable,
    QuarantinedReading,
    QuarantinePolicy,
    RetentionOutcome,
    SharedSeries,
    SiteEntry,
    SiteReadings,
    WriteOutcome,
    site_entry,
)
from gridctl.history.recorder import Recorder, RecorderStats
from gridctl.history.spool import Spool, SpoolAlarm, SpoolFull
from gridctl.history.sqlite import SQLiteHistorian


def is_postgres_dsn(target: str) -> bool:
    """PostgreSQL URIs and libpq key=value strings; anything else is a SQLite file path."""
    return target.startswith(("postgresql://", "postgres://")) or ("=" in target and " " in target.strip()) or (
        target.startswith(("host=", "dbname=", "user=", "port=", "service="))
    )


def open_historian(target: str, **options: Any) -> Historian:
    """A historian for a PostgreSQL DSN (TimescaleDB) or a SQLite file path; call `await h.open()`."""
    if is_postgres_dsn(target):
        from gridctl.history.timescale import TimescaleHistorian

        return TimescaleHistorian(target, **options)
    return SQLiteHistorian(target, **options)


__all__ = [
    "Aggregate",
    "EnergyResolution",
    "Historian",
    "HistorianUnavailable",
    "QuarantinePolicy",
    "QuarantinedReading",
    "Recorder",
    "RecorderStats",
    "RetentionOutcome",
    "SQLiteHistorian",
    "SharedSeries",
    "SiteEntry",
    "SiteReadings",
    "Spool",
    "SpoolAlarm",
    "SpoolFull",
    "WriteOutcome",
    "is_postgres_dsn",
    "open_historian",
    "site_entry",
]
