"""The SQL of site leases, instances, live snapshots and requests (PostgreSQL; tables of migration 106).

Every time that decides who owns what is the database's (`clock_timestamp()`): no two machines' clocks are
ever compared. Statements are small and bounded in time by the connection pool (gridctl/history/pgpool.py);
while the database is away they fail at once with `HistorianUnavailable`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gridctl.api.db import Database
from gridctl.dispatch.journal import Commanded

# Channels: a site's requests, policy or demand-response events changed (payload: the site id); leases
# moved or an instance came or went (payload: the instance id), so the others rebalance at once.
SITE_CHANNEL = "gridctl_site"
LEASE_CHANNEL = "gridctl_leases"


@dataclass(frozen=True)
class LeaseRow:
    site_id: str
    owner: str | None
    epoch: int
    live: bool  # unexpired by the database's clock


@dataclass(frozen=True)
class InstanceRow:
    instance_id: str
    host: str
    sites: frozenset[str]


@dataclass(frozen=True)
class ClusterState:
    instances: dict[str, InstanceRow]  # live ones
    leases: dict[str, LeaseRow]


@dataclass(frozen=True)
class Claim:
    site_id: str
    epoch: int
    previous_owner: str | None
    previous_epoch: int


@dataclass(frozen=True)
class SiteRequest:
    id: int
    site_id: str
    kind: str  # hands_off | hands_on | acknowledge
    scope: str
    actor: str
    reason: str
    applied: bool
    result: dict[str, Any] | None


@dataclass(frozen=True)
class LiveRow:
    site_id: str
    instance_id: str
    epoch: int
    age_s: float  # by the database's clock
    stamp: float  # the publication, as seconds since the epoch (the database's clock)
    live: bytes | None  # None: not newer than the one already held
    schedule_id: str | None


class ClusterStore:
    def __init__(self, db: Database, instance_id: str) -> None:
        self.db = db
        self.instance_id = instance_id

    # --- instances and leases ------------------------------------------------------------------

    async def register(self, host: str, pid: int, sites: Sequence[str], ttl_s: float) -> list[Claim]:
        """Join: this instance's row, a lease row for each of its sites, and the leases a previous run of
        this instance (same journal, so surely dead) still held, taken back under a new epoch."""
        _, _, rows, _ = await self.db.script([
            ("INSERT INTO cluster_instances (instance_id, host, pid, sites, started_at, heartbeat_at, expires_at) "
             "VALUES (?, ?, ?, ?, clock_timestamp(), clock_timestamp(), clock_timestamp() + make_interval(secs => ?)) "
             "ON CONFLICT (instance_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
             "sites = excluded.sites, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
             "expires_at = excluded.expires_at, stopped_at = NULL",
             [self.instance_id, host, pid, list(sites), ttl_s]),
            ("INSERT INTO site_leases (site_id) SELECT unnest(?::text[]) ON CONFLICT (site_id) DO NOTHING",
             [list(sites)]),
            ("UPDATE site_leases SET epoch = epoch + 1, acquired_at = clock_timestamp(), "
             "renewed_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => ?) "
             "WHERE owner = ? AND expires_at > clock_timestamp() AND site_id = ANY(?) RETURNING site_id, epoch",
             [ttl_s, self.instance_id, list(sites)]),
            ("SELECT pg_notify(?, ?)", [LEASE_CHANNEL, self.instance_id]),
        ])
        return [Claim(site, epoch, self.instance_id, epoch - 1) for site, epoch in rows]

    async def renew(self, held: Mapping[str, int], ttl_s: float) -> dict[str, int]:
        """Heartbeat and renew the leases held (site -> epoch) that the database still counts as ours and
        unexpired, in one transaction; returns those renewed."""
        sites = list(held)
        beat, renewed = await self.db.script([
            # A stopping instance keeps its leases while it hands them over, but counts as gone.
            ("UPDATE cluster_instances SET heartbeat_at = clock_timestamp(), expires_at = CASE WHEN stopped_at IS "
             "NULL THEN clock_timestamp() + make_interval(secs => ?) ELSE expires_at END "
             "WHERE instance_id = ? RETURNING instance_id", [ttl_s, self.instance_id]),
            ("UPDATE site_leases AS l SET renewed_at = clock_timestamp(), "
             "expires_at = clock_timestamp() + make_interval(secs => ?) "
             "FROM unnest(?::text[], ?::bigint[]) AS h (site_id, epoch) "
             "WHERE l.site_id = h.site_id AND l.epoch = h.epoch AND l.owner = ? AND l.expires_at > clock_timestamp() "
             "RETURNING l.site_id, l.epoch", [ttl_s, sites, [held[s] for s in sites], self.instance_id]),
        ])
        if not beat:
            raise LookupError(f"instance {self.instance_id} is not registered")
        return {site: int(epoch) for site, epoch in renewed}

    async def state(self) -> ClusterState:
        instances, leases = await self.db.script([
            ("SELECT instance_id, host, sites FROM cluster_instances "
             "WHERE expires_at > clock_timestamp() AND stopped_at IS NULL", []),
            ("SELECT site_id, owner, epoch, expires_at > clock_timestamp() FROM site_leases", []),
        ])
        return ClusterState(
            {i: InstanceRow(i, host, frozenset(sites)) for i, host, sites in instances},
            {s: LeaseRow(s, owner, int(epoch), bool(live)) for s, owner, epoch, live in leases})

    async def claim(self, site_id: str, ttl_s: float) -> Claim | None:
        """Take a site whose lease expired or was released, raising its epoch; None when another instance
        holds it (or took it at the same moment)."""
        rows = await self.db.fetch(
            "WITH old AS (SELECT site_id, owner, epoch FROM site_leases WHERE site_id = ? FOR UPDATE) "
            "UPDATE site_leases AS l SET owner = ?, epoch = old.epoch + 1, acquired_at = clock_timestamp(), "
            "renewed_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => ?) "
            "FROM old WHERE l.site_id = old.site_id AND l.expires_at <= clock_timestamp() "
            "RETURNING l.epoch, old.owner, old.epoch",
            [site_id, self.instance_id, ttl_s])
        if not rows:
            return None
        epoch, owner, previous = rows[0]
        return Claim(site_id, int(epoch), owner, int(previous))

    async def release(self, site_id: str, epoch: int) -> bool:
        """Let the site go now (its lease expires at once; the owner stays named for the next one)."""
        _, changed = await self.db.script([
            ("SELECT pg_notify(?, ?)", [LEASE_CHANNEL, self.instance_id]),
            ("UPDATE site_leases SET expires_at = clock_timestamp() WHERE site_id = ? AND owner = ? AND epoch = ? "
             "RETURNING site_id", [site_id, self.instance_id, epoch]),
        ])
        return bool(changed)

    async def leave(self) -> None:
        await self.db.script([
            ("UPDATE cluster_instances SET stopped_at = clock_timestamp(), expires_at = clock_timestamp() "
             "WHERE instance_id = ?", [self.instance_id]),
            ("SELECT pg_notify(?, ?)", [LEASE_CHANNEL, self.instance_id]),
        ])

    async def lease(self, site_id: str) -> tuple[LeaseRow, float | None] | None:
        """A site's lease and how many seconds ago (database clock) it expired (None: it has not)."""
        rows = await self.db.fetch(
            "SELECT owner, epoch, expires_at > clock_timestamp(), "
            "extract(epoch FROM clock_timestamp() - expires_at) FROM site_leases WHERE site_id = ?", [site_id])
        if not rows:
            return None
        owner, epoch, live, ago = rows[0]
        return LeaseRow(site_id, owner, int(epoch), bool(live)), None if live else float(ago)

    # --- what the previous owners held -----------------------------------------------------------

    async def left_commanded(self, site_id: str, addresses: Iterable[str]) -> list[Commanded]:
        """For each writable point, the last audited record of any instance, by lease epoch then journal
        order (never by clock): the points still held (not relinquished), with the value and who held it."""
        rows = await self.db.fetch(
            "SELECT a.address, w.written_value, w.priority, w.outcome, w.instance_id, w.epoch, w.journal_seq, w.ts "
            "FROM unnest(?::text[]) AS a (address) CROSS JOIN LATERAL ("
            "  SELECT written_value, priority, outcome, instance_id, epoch, journal_seq, ts FROM write_audit "
            "  WHERE site_id = ? AND address = a.address AND outcome NOT IN ('rejected', 'taken_over', "
            "  'handed_over', 'lease_lost') AND NOT (outcome = 'override' AND written_value IS NULL) "
            "  AND actor <> 'gridctl:watchdog' "
            "  ORDER BY epoch DESC NULLS LAST, journal_seq DESC LIMIT 1) AS w",
            [sorted(set(addresses)), site_id])
        out = []
        for address, value, priority, outcome, instance, epoch, seq, ts in rows:
            if outcome == "relinquished":
                continue
            holder = f"instance {instance}" + (f" (lease epoch {epoch})" if epoch is not None else "")
            out.append(Commanded(site_id, address, None if value is None else json.loads(value), priority,
                                 int(seq or 0), self.db.from_ts(ts) or datetime.min, f"{instance}#{epoch}",
                                 held_by=holder))
        return out

    # --- requests made on another instance -------------------------------------------------------

    async def request(self, site_id: str, kind: str, scope: str, actor: str, reason: str) -> int:
        _, rows = await self.db.script([
            ("SELECT pg_notify(?, ?)", [SITE_CHANNEL, site_id]),
            ("INSERT INTO site_requests (site_id, kind, scope, actor, reason, created_by) VALUES (?, ?, ?, ?, ?, ?) "
             "RETURNING id", [site_id, kind, scope, actor, reason, self.instance_id]),
        ])
        return int(rows[0][0])

    async def notify_site(self, site_id: str) -> None:
        await self.db.execute("SELECT pg_notify(?, ?)", [SITE_CHANNEL, site_id])

    async def pending(self, site_ids: Sequence[str]) -> list[SiteRequest]:
        rows = await self.db.fetch(
            "SELECT id, site_id, kind, scope, actor, reason FROM site_requests "
            "WHERE site_id = ANY(?) AND applied_at IS NULL ORDER BY id", [list(site_ids)])
        return [SiteRequest(int(i), s, k, scope, actor, reason, False, None) for i, s, k, scope, actor, reason in rows]

    async def applied(self, request_id: int, epoch: int, result: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE site_requests SET applied_at = clock_timestamp(), applied_by = ?, applied_epoch = ?, result = ? "
            "WHERE id = ? AND applied_at IS NULL", [self.instance_id, epoch, json.dumps(result), request_id])

    async def request_state(self, request_id: int) -> SiteRequest | None:
        rows = await self.db.fetch(
            "SELECT id, site_id, kind, scope, actor, reason, applied_at IS NOT NULL, result FROM site_requests "
            "WHERE id = ?", [request_id])
        if not rows:
            return None
        i, s, k, scope, actor, reason, applied, result = rows[0]
        return SiteRequest(int(i), s, k, scope, actor, reason, bool(applied),
                           None if result is None else json.loads(result))

    async def policy_marks(self, site_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """A mark per site that changes whenever its policy versions or demand-response events do."""
        rows = await self.db.fetch(
            "SELECT s.site_id, (SELECT max(version) FROM policy_versions WHERE site_id = s.site_id), "
            "(SELECT count(*) FROM demand_response_events WHERE site_id = s.site_id), "
            "(SELECT count(cancelled_at) FROM demand_response_events WHERE site_id = s.site_id) "
            "FROM unnest(?::text[]) AS s (site_id)", [list(site_ids)])
        return {site: (version, events, cancelled) for site, version, events, cancelled in rows}

    # --- live snapshots --------------------------------------------------------------------------

    async def publish(self, snapshots: Sequence[tuple[str, int, bytes]],
                      schedules: Sequence[tuple[str, int, str, bytes]]) -> None:
        """One row per site: its live values (and its schedule when it changed). A row written under a
        newer epoch is never overwritten by an older owner."""
        statements: list[tuple[str, Sequence[Any]]] = []
        if snapshots:
            statements.append((
                "INSERT INTO site_live (site_id, instance_id, epoch, published_at, live) "
                "SELECT s, ?, e, clock_timestamp(), l FROM unnest(?::text[], ?::bigint[], ?::bytea[]) AS x (s, e, l) "
                "ON CONFLICT (site_id) DO UPDATE SET instance_id = excluded.instance_id, epoch = excluded.epoch, "
                "published_at = excluded.published_at, live = excluded.live WHERE site_live.epoch <= excluded.epoch",
                [self.instance_id, [s for s, _, _ in snapshots], [e for _, e, _ in snapshots],
                 [b for _, _, b in snapshots]]))
        for site_id, epoch, schedule_id, body in schedules:
            statements.append((
                "UPDATE site_live SET schedule_id = ?, schedule = ? WHERE site_id = ? AND epoch = ?",
                [schedule_id, body, site_id, epoch]))
        if statements:
            await self.db.script(statements)

    async def live(self, known: Mapping[str, float]) -> list[LiveRow]:
        """The live rows of the sites in `known` (site -> the publication already held, seconds since the
        epoch; 0 for none): a row not newer than that comes without its payload."""
        rows = await self.db.fetch(
            "SELECT l.site_id, l.instance_id, l.epoch, extract(epoch FROM clock_timestamp() - l.published_at), "
            "extract(epoch FROM l.published_at), "
            "CASE WHEN extract(epoch FROM l.published_at) > k.stamp THEN l.live END, l.schedule_id "
            "FROM unnest(?::text[], ?::float8[]) AS k (site_id, stamp) JOIN site_live AS l ON l.site_id = k.site_id",
            [list(known), [float(v) for v in known.values()]])
        return [LiveRow(site, instance, int(epoch), float(age), float(stamp),
                        bytes(live) if live is not None else None, schedule_id)
                for site, instance, epoch, age, stamp, live, schedule_id in rows]

    async def schedule(self, site_id: str) -> tuple[str | None, bytes | None]:
        rows = await self.db.fetch("SELECT schedule_id, schedule FROM site_live WHERE site_id = ?", [site_id])
        if not rows or rows[0][1] is None:
            return None, None
        return rows[0][0], bytes(rows[0][1])
