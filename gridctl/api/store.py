"""The API's records: users and their tokens, residents' consent, the write audit, policy versions and
demand-response events, all in the historian's database."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from gridctl.api.db import Conflict, Database
from gridctl.dispatch.audit import AuditEntry, Outcome
from gridctl.dispatch.journal import HandsEvent
from gridctl.policy import DemandResponse, PolicyVersion, RejectedPolicy, SitePolicy

TOKEN_PREFIX = "gct_"


class Role(StrEnum):
    RESIDENT = "resident"
    OPERATOR = "operator"
    MANAGER = "manager"
    ADMIN = "admin"


class Purpose(StrEnum):
    """What a resident may consent to, one purpose at a time (CNIL practice for smart meters)."""

    # Reading their own hourly and 15-minute load curve through the API and the web page.
    LOAD_CURVE = "load_curve"
    # Their load curve used, pseudonymised, in the district's energy studies.
    RESEARCH = "research"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    # Residents: "<site_id>/<dwelling_id>" entries; everyone else: site ids, or "*" for every site.
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def sees_site(self, site_id: str) -> bool:
        if self.role is Role.RESIDENT:
            return False
        return "*" in self.scope or site_id in self.scope

    def dwellings(self) -> list[tuple[str, str]]:
        if self.role is not Role.RESIDENT:
            return []
        return [tuple(entry.split("/", 1)) for entry in self.scope if "/" in entry]  # type: ignore[misc]

    def has_dwelling(self, site_id: str, dwelling_id: str) -> bool:
        return self.role is Role.RESIDENT and f"{site_id}/{dwelling_id}" in self.scope


@dataclass(frozen=True)
class ConsentEvent:
    site_id: str
    dwelling_id: str
    purpose: Purpose
    granted: bool
    at: datetime


@dataclass(frozen=True)
class AuditFilter:
    site_id: str
    device_id: str | None = None
    address: str | None = None
    actor: str | None = None
    outcome: Outcome | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 500
    # Devices whose entries are left out (dwellings' meters).
    hidden_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemandResponseRecord:
    site_id: str
    event_id: str
    # None when the stored event no longer validates (`problem` says why): it is never honoured.
    event: DemandResponse | None
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    problem: str | None = None
    # As stored, valid or not.
    ends_at: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.event is not None and self.cancelled_at is None and self.event.end > now


def new_token() -> str:
    """A 256-bit random bearer token; only its digest is stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are uniformly random and long, so a plain SHA-256 (no salt, no stretching) is enough.
    return hashlib.sha256(token.encode()).hexdigest()


_USER_COLUMNS = "id, name, role, scope, token_hash, created_at, expires_at, revoked_at"


class ApiStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- users -----------------------------------------------------------------------------------

    def _user(self, row: tuple[Any, ...]) -> User:
        return User(
            id=row[0], name=row[1], role=Role(row[2]), scope=tuple(json.loads(row[3])),
            created_at=self.db.from_ts(row[5]),  # type: ignore[arg-type]
            expires_at=self.db.from_ts(row[6]),  # type: ignore[arg-type]
            revoked_at=self.db.from_ts(row[7]),
        )

    async def add_user(self, name: str, role: Role, scope: list[str], now: datetime,
                       valid_for: timedelta) -> tuple[User, str]:
        """Create a user with a fresh token; the token is returned once and never stored."""
        token = new_token()
        rows = await self.db.fetch(
            "INSERT INTO api_users (name, role, scope, token_hash, created_at, expires_at) "
            f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_USER_COLUMNS}",
            [name, str(role), json.dumps(sorted(set(scope))), hash_token(token), self.db.ts(now),
             self.db.ts(now + valid_for)],
        )
        return self._user(rows[0]), token

    async def user_for_token(self, token: str) -> User | None:
        digest = hash_token(token)
        rows = await self.db.fetch(f"SELECT {_USER_COLUMNS} FROM api_users WHERE token_hash = ?", [digest])
        # The lookup is by digest; comparing again in constant time keeps timing from telling how much matched.
        if not rows or not hmac.compare_digest(rows[0][4], digest):
            return None
        return self._user(rows[0])

    async def user(self, name: str) -> User | None:
        rows = await self.db.fetch(f"SELECT {_USER_COLUMNS} FROM api_users WHERE name = ?", [name])
        return self._user(rows[0]) if rows else None

    async def user_by_id(self, user_id: int) -> User | None:
        rows = await self.db.fetch(f"SELECT {_USER_COLUMNS} FROM api_users WHERE id = ?", [user_id])
        return self._user(rows[0]) if rows else None

    async def users(self) -> list[User]:
        return [self._user(r) for r in await self.db.fetch(f"SELECT {_USER_COLUMNS} FROM api_users ORDER BY id")]

    async def revoke(self, name: str, now: datetime) -> bool:
        changed = await self.db.execute(
            "UPDATE api_users SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", [self.db.ts(now), name]
        )
        return changed > 0

    # --- consent ---------------------------------------------------------------------------------

    async def record_consent(self, user: User, site_id: str, dwelling_id: str, purpose: Purpose, granted: bool,
                             now: datetime) -> ConsentEvent:
        await self.db.execute(
            "INSERT INTO consent_events (user_id, site_id, dwelling_id, purpose, granted, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [user.id, site_id, dwelling_id, str(purpose), self.db.flag(granted), self.db.ts(now)],
        )
        return ConsentEvent(site_id, dwelling_id, purpose, granted, now)

    async def consent_history(self, user: User) -> list[ConsentEvent]:
        rows = await self.db.fetch(
            "SELECT site_id, dwelling_id, purpose, granted, at FROM consent_events WHERE user_id = ? ORDER BY id",
            [user.id],
        )
        return [ConsentEvent(s, d, Purpose(p), bool(g), self.db.from_ts(at)) for s, d, p, g, at in rows]  # type: ignore[arg-type]

    async def consents(self, user: User, site_id: str, dwelling_id: str) -> dict[Purpose, ConsentEvent | None]:
        """The latest decision per purpose (None: never asked, which means no consent)."""
        state: dict[Purpose, ConsentEvent | None] = dict.fromkeys(Purpose)
        for event in await self.consent_history(user):
            if (event.site_id, event.dwelling_id) == (site_id, dwelling_id):
                state[event.purpose] = event
        return state

    async def has_consent(self, user: User, site_id: str, dwelling_id: str, purpose: Purpose) -> bool:
        rows = await self.db.fetch(
            "SELECT granted FROM consent_events WHERE user_id = ? AND site_id = ? AND dwelling_id = ? "
            "AND purpose = ? ORDER BY id DESC LIMIT 1",
            [user.id, site_id, dwelling_id, str(purpose)],
        )
        return bool(rows and rows[0][0])

    async def erase(self, user: User, now: datetime) -> None:
        """Remove the resident's personal links: their consents, their dwellings and their name. The
        dwellings' metering stays, no longer linked to anyone, so district aggregates keep their history."""
        await self.db.script([
            ("DELETE FROM consent_events WHERE user_id = ?", [user.id]),
            ("UPDATE api_users SET name = ?, scope = '[]', revoked_at = ? WHERE id = ?",
             [f"erased-{secrets.token_hex(8)}", self.db.ts(now), user.id]),
            ("INSERT INTO erasures (requested_at, dwellings) VALUES (?, ?)", [self.db.ts(now), len(user.scope)]),
        ])

    # --- write audit -----------------------------------------------------------------------------

    async def record_audit(self, entry: AuditEntry) -> None:
        await self.db.execute(*_audit_insert(self.db, entry))

    async def ship_journal(self, records: Sequence[AuditEntry | HandsEvent]) -> None:
        """Store records of a write journal in one transaction, in their order. Each is keyed by its
        instance and journal sequence: a record shipped again (after a crash between this commit and
        the journal noting it) changes nothing."""
        statements: list[tuple[str, Sequence[Any]]] = []
        for record in records:
            if isinstance(record, HandsEvent):
                statements += _hands_statements(self.db, record)
            else:
                statements.append(_audit_insert(self.db, record))
        if statements:
            await self.db.script(statements)

    async def hands_off(self, site_id: str) -> list[HandsOffRecord]:
        rows = await self.db.fetch(
            "SELECT scope, actor, reason, since, instance_id FROM hands_off WHERE site_id = ? ORDER BY since",
            [site_id])
        return [HandsOffRecord(site_id, r[0], r[1], r[2], self.db.from_ts(r[3]), r[4]) for r in rows]  # type: ignore[arg-type]

    async def put_hands_off(self, record: HandsOffRecord) -> None:
        await self.db.execute(*_hands_upsert(self.db, record))

    async def audit_entries(self, query: AuditFilter) -> list[AuditEntry]:
        where = ["site_id = ?"]
        params: list[Any] = [query.site_id]
        for column, value in (("device_id", query.device_id), ("address", query.address), ("actor", query.actor),
                              ("outcome", None if query.outcome is None else str(query.outcome))):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.hidden_devices:
            where.append(f"device_id NOT IN ({', '.join('?' * len(query.hidden_devices))})")
            params.extend(query.hidden_devices)
        if query.start is not None:
            where.append("ts >= ?")
            params.append(self.db.ts(query.start))
        if query.end is not None:
            where.append("ts < ?")
            params.append(self.db.ts(query.end))
        params.append(query.limit)
        rows = await self.db.fetch(
            "SELECT ts, site_id, address, actor, reason, schedule_id, policy_version, old_value, requested_value, "
            "written_value, priority, lease_until, outcome, read_back, error, clamped, ramped, unit, instance_id, "
            "journal_seq, epoch, outcome_at FROM write_audit "
            f"WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT ?",
            params,
        )
        return [
            AuditEntry(
                ts=self.db.from_ts(r[0]), site_id=r[1], address=r[2], actor=r[3], reason=r[4],  # type: ignore[arg-type]
                schedule_id=r[5], policy_version=r[6], old_value=_unvalue(r[7]), requested_value=_unvalue(r[8]),
                written_value=_unvalue(r[9]), priority=r[10], lease_until=self.db.from_ts(r[11]),
                outcome=Outcome(r[12]), read_back=_unvalue(r[13]), error=r[14], clamped=bool(r[15]),
                ramped=bool(r[16]), unit=r[17], instance_id=r[18], journal_seq=r[19], epoch=r[20],
                outcome_at=self.db.from_ts(r[21]),
            )
            for r in rows
        ]

    # --- policies --------------------------------------------------------------------------------

    def _policy(self, row: tuple[Any, ...]) -> PolicyVersion | RejectedPolicy:
        site_id, version, raw, author, comment, created = row
        created_at = self.db.from_ts(created)
        try:
            policy = SitePolicy.model_validate_json(raw)
        except ValidationError as error:
            # Stored by an earlier gridctl with looser rules, or edited by hand: kept, never put in force.
            problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            return RejectedPolicy(site_id, version, author, comment, created_at, problem, raw)  # type: ignore[arg-type]
        return PolicyVersion(site_id=site_id, version=version, policy=policy, author=author, comment=comment,
                             created_at=created_at)  # type: ignore[arg-type]

    async def add_policy(self, site_id: str, policy: SitePolicy, author: str, comment: str, now: datetime,
                         base_version: int | None = None) -> PolicyVersion:
        """Store the next version. With `base_version` (the version the author started from; 0 for none),
        raises `Conflict` when another version was stored since; concurrent inserts raise `Conflict` too."""
        having = ""
        params: list[Any] = [site_id, policy.model_dump_json(), author, comment, self.db.ts(now), site_id]
        if base_version is not None:
            having = " HAVING coalesce(max(version), 0) = ?"
            params.append(base_version)
        rows = await self.db.fetch(
            "INSERT INTO policy_versions (site_id, version, policy, author, comment, created_at) "
            f"SELECT ?, coalesce(max(version), 0) + 1, ?, ?, ?, ? FROM policy_versions WHERE site_id = ?{having} "
            "RETURNING site_id, version, policy, author, comment, created_at",
            params,
        )
        if not rows:
            raise Conflict(f"the policy was changed since version {base_version}")
        stored = self._policy(rows[0])
        assert isinstance(stored, PolicyVersion)
        return stored

    async def policies(self, site_id: str) -> list[PolicyVersion | RejectedPolicy]:
        rows = await self.db.fetch(
            "SELECT site_id, version, policy, author, comment, created_at FROM policy_versions "
            "WHERE site_id = ? ORDER BY version",
            [site_id],
        )
        return [self._policy(r) for r in rows]

    async def policy(self, site_id: str, version: int | None = None) -> PolicyVersion | RejectedPolicy | None:
        if version is None:
            sql, params = "WHERE site_id = ? ORDER BY version DESC LIMIT 1", [site_id]
        else:
            sql, params = "WHERE site_id = ? AND version = ?", [site_id, version]
        rows = await self.db.fetch(
            f"SELECT site_id, version, policy, author, comment, created_at FROM policy_versions {sql}", params
        )
        return self._policy(rows[0]) if rows else None

    # --- demand response -------------------------------------------------------------------------

    async def add_demand_response(self, site_id: str, event: DemandResponse, author: str, now: datetime) -> bool:
        """Record an event; False when the site already has one with this id (also under concurrent inserts)."""
        try:
            added = await self.db.execute(
                "INSERT INTO demand_response_events (site_id, id, start_at, end_at, max_import_kw, "
                "value_eur_per_kwh, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (site_id, id) DO NOTHING",
                [site_id, event.id, self.db.ts(event.start), self.db.ts(event.end), event.max_import_kw,
                 event.value_eur_per_kwh, author, self.db.ts(now)],
            )
        except Conflict:
            return False
        return added > 0

    async def cancel_demand_response(self, site_id: str, event_id: str, who: str, reason: str,
                                     now: datetime) -> DemandResponseRecord | None:
        """Mark an event cancelled; None when there is no such event or it was already cancelled."""
        changed = await self.db.execute(
            "UPDATE demand_response_events SET cancelled_at = ?, cancelled_by = ?, cancel_reason = ? "
            "WHERE site_id = ? AND id = ? AND cancelled_at IS NULL",
            [self.db.ts(now), who, reason, site_id, event_id],
        )
        return await self.demand_response(site_id, event_id) if changed else None

    async def demand_response(self, site_id: str, event_id: str) -> DemandResponseRecord | None:
        found = await self._demand_responses("WHERE site_id = ? AND id = ?", [site_id, event_id])
        return found[0] if found else None

    async def demand_responses(self, site_id: str) -> list[DemandResponseRecord]:
        return await self._demand_responses("WHERE site_id = ? ORDER BY start_at, id", [site_id])

    async def _demand_responses(self, where: str, params: list[Any]) -> list[DemandResponseRecord]:
        rows = await self.db.fetch(
            "SELECT site_id, id, start_at, end_at, max_import_kw, value_eur_per_kwh, created_by, created_at, "
            f"cancelled_at, cancelled_by, cancel_reason FROM demand_response_events {where}",
            params,
        )
        out = []
        for site_id, event_id, start, end, max_kw, value, by, at, cancelled_at, cancelled_by, why in rows:
            event, problem = None, None
            try:
                event = DemandResponse(id=event_id, start=self.db.from_ts(start), end=self.db.from_ts(end),  # type: ignore[arg-type]
                                       max_import_kw=max_kw, value_eur_per_kwh=value)
            except ValidationError as error:
                problem = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                                    for e in error.errors())
            out.append(DemandResponseRecord(site_id, event_id, event, by, self.db.from_ts(at),  # type: ignore[arg-type]
                                            self.db.from_ts(cancelled_at), cancelled_by, why, problem,
                                            self.db.from_ts(end)))
        return out


@dataclass(frozen=True)
class HandsOffRecord:
    """A scope gridctl does not command, as the database keeps it."""

    site_id: str
    scope: str
    actor: str
    reason: str
    since: datetime
    instance_id: str | None


def _audit_insert(db: Database, entry: AuditEntry) -> tuple[str, list[Any]]:
    return (
        "INSERT INTO write_audit (ts, site_id, address, device_id, actor, reason, schedule_id, policy_version, "
        "old_value, requested_value, written_value, priority, lease_until, outcome, read_back, error, clamped, "
        "ramped, unit, instance_id, journal_seq, epoch, outcome_at, action) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (instance_id, journal_seq) DO NOTHING",
        [
            db.ts(entry.ts), entry.site_id, entry.address, entry.address.partition("/")[0], entry.actor,
            entry.reason, entry.schedule_id, entry.policy_version, _value(entry.old_value),
            _value(entry.requested_value), _value(entry.written_value), entry.priority, db.ts(entry.lease_until),
            str(entry.outcome), _value(entry.read_back), entry.error, db.flag(entry.clamped), db.flag(entry.ramped),
            entry.unit, entry.instance_id, entry.journal_seq, entry.epoch, db.ts(entry.outcome_at), entry.action,
        ],
    )


def _hands_upsert(db: Database, record: HandsOffRecord) -> tuple[str, list[Any]]:
    return (
        "INSERT INTO hands_off (site_id, scope, actor, reason, since, instance_id) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (site_id, scope) DO UPDATE SET actor = excluded.actor, reason = excluded.reason, "
        "since = excluded.since, instance_id = excluded.instance_id",
        [record.site_id, record.scope, record.actor, record.reason, db.ts(record.since), record.instance_id],
    )


def _hands_statements(db: Database, event: HandsEvent) -> list[tuple[str, Sequence[Any]]]:
    if event.on:
        change: tuple[str, Sequence[Any]] = (
            "DELETE FROM hands_off WHERE site_id = ? AND scope = ?", [event.site_id, event.scope])
    else:
        change = _hands_upsert(db, HandsOffRecord(event.site_id, event.scope, event.actor, event.reason, event.at,
                                                  event.instance_id))
    log_row = (
        "INSERT INTO hands_off_log (site_id, scope, action, actor, reason, at, instance_id, journal_seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id, journal_seq) DO NOTHING",
        [event.site_id, event.scope, "on" if event.on else "off", event.actor, event.reason, db.ts(event.at),
         event.instance_id, event.seq],
    )
    return [change, log_row]


class StoreAuditSink:
    """The dispatch arbiter's audit sink, writing to the `write_audit` table."""

    def __init__(self, store: ApiStore) -> None:
        self.store = store

    async def record(self, entry: AuditEntry) -> None:
        await self.store.record_audit(entry)


def _value(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def _unvalue(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)
