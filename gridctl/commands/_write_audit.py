"""Where `gridctl points write` audits a write: the history database's `write_audit` table.

`--db` names the database; without it, the embedded SQLite history `gridctl run` uses by default is
used when it exists. The entry is also always printed by the command itself. The API's database layer
is imported only when a database is used: it brings the whole web application with it.

Like the service's writes, a command-line write goes through a local write journal (one per audit
database, in the data directory's `journal/`): its intent is on disk before the device hears anything,
its outcome after, and the record is shipped to the database exactly once — at once, or when the
database is away, by the next `gridctl points write` to the same database.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

from gridctl import paths
from gridctl.dispatch.audit import AuditEntry
from gridctl.dispatch.journal import WriteJournal

# Another `points write` to the same database holds the journal for a second or two: wait for it.
JOURNAL_WAIT_S = 30.0
SHIP_TIMEOUT_S = 10.0


class AuditUnavailable(Exception):
    """The database named for the audit cannot take it; nothing was written to the device."""


class AuditAway(AuditUnavailable):
    """The database does not answer now: the audit can wait in the local journal."""


def audit_target(db: str | None) -> str | None:
    """The database the audit goes to: `--db`, else the default one if it exists, else none."""
    if db is not None:
        return db
    default = paths.default_database()
    return str(default) if default.exists() else None


def describe(target: str) -> str:
    """The target as shown to the user, without a password."""
    return re.sub(r"(password=)\S+", r"\1***", re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", target))


async def check_audit_target(target: str) -> None:
    """Raise AuditUnavailable unless `target` has a write_audit table to write to."""
    from gridctl.api.db import open_database
    from gridctl.history import HistorianUnavailable, is_postgres_dsn

    if not is_postgres_dsn(target) and not await asyncio.to_thread(Path(target).is_file):
        raise AuditUnavailable(f"no database at {target}: create it with `gridctl db upgrade --db {target}`")
    db = open_database(target)
    try:
        await db.open()
        await db.fetch("SELECT count(*) FROM write_audit WHERE 1 = 0")
    except HistorianUnavailable as exc:
        raise AuditAway(f"{describe(target)}: {exc}") from exc
    except Exception as exc:
        raise AuditUnavailable(f"{describe(target)} has no write_audit table ({exc}): run "
                               f"`gridctl db upgrade` on it") from exc
    finally:
        await db.close()


def journal_path(target: str) -> Path:
    """The journal of writes audited in `target`: one per database, so each record ships where it belongs."""
    key = hashlib.sha256(target.encode()).hexdigest()[:12]
    return paths.data_dir() / "journal" / f"points-{key}.sqlite3"


def open_journal(target: str) -> WriteJournal:
    return WriteJournal(journal_path(target), lock_wait_s=JOURNAL_WAIT_S)


async def ship(journal: WriteJournal, target: str, timeout_s: float = SHIP_TIMEOUT_S) -> None:
    """Ship every complete record of the journal to `target`; raises when the database refuses."""
    from gridctl.dispatch.shipper import JournalShipper

    shipper = JournalShipper(journal, target)
    try:
        await asyncio.wait_for(shipper.drain(), timeout_s)
    finally:
        await shipper.db.close()


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {"ts": entry.ts.isoformat(), "site_id": entry.site_id, "address": entry.address, "actor": entry.actor,
            "reason": entry.reason, "outcome": str(entry.outcome), "old_value": entry.old_value,
            "requested_value": entry.requested_value, "written_value": entry.written_value,
            "priority": entry.priority, "read_back": entry.read_back, "error": entry.error, "unit": entry.unit}
