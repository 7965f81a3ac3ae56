"""One instance's part in sharing sites: register, renew, claim a fair share, hand over, take over.

Every `renew_s` the instance heartbeats and renews its leases in one transaction, then reads who is alive
and who holds what, and claims or hands over sites to reach its fair share (gridctl/cluster/share.py). A
lease counts from the moment its renewal was sent (gridctl/dispatch/fencing.py); a watch loop stops
commanding a site the moment its write window closes without a renewal — before the database lets anyone
else take it — and journals why. LISTEN/NOTIFY wakes the instance when leases move (rebalancing at once)
and when a site's requests, policy or demand-response events change (the owner applies them within a
second); a re-read every `resync_s` catches what a lost notification missed. The owner publishes each
site's live values every `live_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg

from gridctl.cluster.share import fair_share
from gridctl.cluster.store import LEASE_CHANNEL, SITE_CHANNEL, Claim, ClusterState, ClusterStore, SiteRequest
from gridctl.dispatch.audit import Outcome
from gridctl.dispatch.fencing import MARGIN_S, SiteLease
from gridctl.history.pgpool import sever

log = logging.getLogger(__name__)
# How long a stopping instance waits for each of its loops to end.
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class ClusterSettings:
    """Timing of site leases. The lease must outlast a renewal period, the longest write and a margin;
    a lease of at least two renewal periods more survives one renewal that fails."""

    lease_s: float = 20.0
    renew_s: float = 5.0
    # The longest a write may take (abandoned past it); None: each site's devices' timeouts and retries.
    write_budget_s: float | None = None
    live_s: float = 5.0
    resync_s: float = 2.0

    def check(self, site_id: str, budget_s: float) -> None:
        """Refuse timings under which an instance could still write after another one may take the site."""
        needed = self.renew_s + budget_s + MARGIN_S
        if self.lease_s <= needed:
            raise ValueError(f"{site_id}: a site lease of {self.lease_s:g} s is too short: it must exceed the renewal "
                             f"period ({self.renew_s:g} s) + the longest write ({budget_s:g} s) + {MARGIN_S:g} s; "
                             "lengthen --lease-s or shorten --renew-s or --write-budget-s")
        if self.lease_s <= needed + self.renew_s:
            log.warning("%s: with a %g s lease renewed every %g s and writes of up to %g s, one failed renewal "
                        "stops control of the site", site_id, self.lease_s, self.renew_s, budget_s)


class SiteHost(Protocol):
    """What the coordinator asks of the service host."""

    def write_budget_s(self, site_id: str) -> float: ...

    async def take(self, site_id: str, lease: SiteLease, claim: Claim) -> None: ...

    async def drop(self, site_id: str, why: str, outcome: Outcome, *, relinquish: bool = False) -> None: ...

    def active_sites(self) -> list[str]: ...

    async def apply_requests(self, site_id: str, requests: Sequence[SiteRequest]) -> None: ...

    async def follow_policy(self, site_id: str) -> None: ...

    async def publish(self, site_ids: Sequence[str]) -> None: ...


class Coordinator:
    def __init__(self, store: ClusterStore, dsn: str, sites: Sequence[str], host: SiteHost,
                 settings: ClusterSettings) -> None:
        self.store = store
        self.instance_id = store.instance_id
        self.dsn = dsn
        self.sites = list(sites)
        self.host = host
        self.settings = settings
        self.budgets = {s: settings.write_budget_s if settings.write_budget_s is not None else host.write_budget_s(s)
                        for s in self.sites}
        for site_id, budget in self.budgets.items():
            settings.check(site_id, budget)
        self.leases: dict[str, SiteLease] = {}
        self.state: ClusterState | None = None
        self.last_error: str | None = None
        self.listening = False
        self._activations: dict[str, asyncio.Task[None]] = {}
        self._drops: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_tick = asyncio.Event()
        self._wake_resync = asyncio.Event()
        self._marks: dict[str, tuple[object, ...]] = {}
        self._stopping = False
        self._registered = False
        # The LISTEN connection, severed at stop: a task cancelled while psycopg waits on a socket may
        # otherwise wait for the server's answer to its cancel request.
        self._listening_on: psycopg.AsyncConnection | None = None

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        for name, loop in (("tick", self._tick_loop), ("watch", self._watch_loop), ("listen", self._listen_loop),
                           ("resync", self._resync_loop), ("publish", self._publish_loop)):
            self._tasks.append(asyncio.create_task(loop(), name=f"cluster {name}"))

    async def stop(self) -> None:
        """Hand each site over to an instance that serves it (no relinquish: the next owner carries on), or
        relinquish it when no other instance is alive to take it; then leave."""
        self._stopping = True
        if self._listening_on is not None:
            sever(self._listening_on)
        await _halt([*self._tasks[2:], *self._activations.values()])
        # Gone for the others first: instances stopping together do not hand sites to each other.
        with contextlib.suppress(Exception):
            await self.store.leave()
            self.state = await self.store.state()
        def leave(site_id: str) -> Awaitable[None]:
            others = [] if self.state is None else [
                i for i, row in self.state.instances.items() if i != self.instance_id and site_id in row.sites]
            if others:
                return self._hand_over(site_id, f"instance {self.instance_id} stops; instances {', '.join(others)} "
                                                "serve the site")
            return self._hand_over(site_id, f"instance {self.instance_id} stops and no other instance serves the "
                                            "site", relinquish=True)

        await asyncio.gather(*(leave(site_id) for site_id in list(self.leases)))
        await asyncio.gather(*self._drops, return_exceptions=True)
        await _halt(self._tasks[:2])
        with contextlib.suppress(Exception):
            await self.store.leave()

    def is_maintainer(self) -> bool:
        """Database maintenance (rollups, retention) runs on one instance: the live one of smallest id."""
        return self.state is None or min(self.state.instances, default=self.instance_id) == self.instance_id

    def owned(self) -> list[str]:
        return [s for s, lease in self.leases.items() if lease.ended is None]

    # --- renew, claim, hand over ----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            ok = await self.tick()
            with contextlib.suppress(TimeoutError):
                # After a failure, try again soon: a lease must not lapse for one lost statement.
                await asyncio.wait_for(self._wake_tick.wait(),
                                       self.settings.renew_s if ok else min(1.0, self.settings.renew_s))
            self._wake_tick.clear()

    async def tick(self) -> bool:
        """One renewal and rebalancing round; False when the database did not answer."""
        try:
            if not self._registered:
                await self._register()
            held = {s: lease.epoch for s, lease in self.leases.items()}
            sent = time.monotonic()
            try:
                renewed = await self.store.renew(held, self.settings.lease_s)
            except LookupError:
                self._registered = False
                return False
            for site_id, epoch in held.items():
                lease = self.leases.get(site_id)
                if lease is None or lease.epoch != epoch:
                    continue
                if renewed.get(site_id) == epoch:
                    lease.renewed(sent)
                elif lease.ended is None:
                    self._lose(site_id, "the database no longer counts this instance as the site's owner (the lease "
                                        "expired or another instance holds it)")
            self.state = await self.store.state()
        except Exception as error:  # the database is away or failing: the watch loop guards the leases
            if self.last_error is None:
                log.warning("site leases: the database does not answer (%s); leases lapse in %s", _describe(error),
                            ", ".join(f"{s} {lease.remaining_s():.1f} s" for s, lease in self.leases.items()) or "-")
            self.last_error = _describe(error)
            return False
        if self.last_error is not None:
            log.warning("site leases: the database answers again")
            self.last_error = None
        if not self._stopping:
            await self._rebalance(self.state)
        return True

    async def _register(self) -> None:
        await self.store.db.open()
        sent = time.monotonic()
        resumed = await self.store.register(socket.gethostname(), os.getpid(), self.sites, self.settings.lease_s)
        self._registered = True
        log.info("site leases: instance %s serves %s (lease %g s, renewed every %g s)", self.instance_id,
                 ", ".join(self.sites), self.settings.lease_s, self.settings.renew_s)
        for claim in resumed:
            # A previous run of this instance (same journal: surely dead) held it: take it back.
            self._start(claim, sent)

    async def _rebalance(self, state: ClusterState) -> None:
        moves = fair_share(self.instance_id, state)
        for site_id in moves.release:
            task = self._activations.get(site_id)
            if site_id in self.leases and (task is None or task.done()):
                takers = [i for i, row in state.instances.items() if i != self.instance_id and site_id in row.sites]
                await self._hand_over(site_id, f"rebalancing: {len(state.instances)} instances share the sites; "
                                               f"instances {', '.join(takers)} may take it")
        for site_id in moves.claim:
            if site_id in self.leases or any(not t.done() for t in self._drops if t.get_name() == site_id):
                continue
            sent = time.monotonic()
            claim = await self.store.claim(site_id, self.settings.lease_s)
            if claim is not None:
                self._start(claim, sent)

    def _start(self, claim: Claim, sent: float) -> None:
        lease = SiteLease(claim.site_id, claim.epoch, self.settings.lease_s, self.budgets[claim.site_id])
        lease.renewed(sent)
        self.leases[claim.site_id] = lease
        log.warning("%s: site lease taken (epoch %d; previous owner %s, epoch %d)", claim.site_id, claim.epoch,
                    claim.previous_owner or "none", claim.previous_epoch)
        self._activations[claim.site_id] = asyncio.create_task(self._activate(lease, claim),
                                                               name=f"take {claim.site_id}")

    async def _activate(self, lease: SiteLease, claim: Claim) -> None:
        try:
            await self.host.take(lease.site_id, lease, claim)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the site cannot start here: let another instance try
            log.exception("%s: could not take the site over", lease.site_id)
            if self.leases.get(lease.site_id) is lease:
                self._activations.pop(lease.site_id, None)
                await self._hand_over(lease.site_id, f"could not start here ({_describe(error)})")
        self._wake_resync.set()

    def _lose(self, site_id: str, why: str) -> None:
        """Stop commanding a site at once (no relinquish): its lease is not ours any more."""
        lease = self.leases.pop(site_id)
        lease.ended = why
        log.error("%s: %s; this instance stops commanding it (epoch %d)", site_id, why, lease.epoch)
        task = self._activations.pop(site_id, None)
        if task is not None:
            task.cancel()
        drop = asyncio.create_task(self._drop_after(task, site_id, why, Outcome.LEASE_LOST), name=site_id)
        self._drops.add(drop)
        drop.add_done_callback(self._drops.discard)

    async def _drop_after(self, activation: asyncio.Task[None] | None, site_id: str, why: str,
                          outcome: Outcome, relinquish: bool = False) -> None:
        if activation is not None:
            await asyncio.gather(activation, return_exceptions=True)
        try:
            await self.host.drop(site_id, why, outcome, relinquish=relinquish)
        except Exception:
            log.exception("%s: stopping the site failed", site_id)

    async def _hand_over(self, site_id: str, why: str, *, relinquish: bool = False) -> None:
        """Stop here (relinquishing only when asked), ship the journal, then release the lease so the next
        owner takes the site at once. Renewals go on meanwhile, so nobody polls it twice."""
        lease = self.leases[site_id]
        task = self._activations.pop(site_id, None)
        if task is not None:
            task.cancel()
        if not relinquish:
            lease.ended = why
        await self._drop_after(task, site_id, why, Outcome.HANDED_OVER, relinquish)
        lease.ended = why
        try:
            await self.store.release(site_id, lease.epoch)
        except Exception as error:  # it expires on its own
            log.warning("%s: releasing the lease failed (%s); it expires in %.0f s", site_id, _describe(error),
                        self.settings.lease_s)
        self.leases.pop(site_id, None)
        log.warning("%s: site handed over (epoch %d): %s", site_id, lease.epoch, why)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            for site_id, lease in list(self.leases.items()):
                if lease.ended is None and lease.remaining_s() <= 0:
                    self._lose(site_id, f"the site lease could not be renewed in time ({self.last_error or 'no answer'}"
                                        "); control stops before any other instance may take the site, and the "
                                        "devices' own fallbacks (leases, watchdogs) act")

    # --- notifications, requests and policies ---------------------------------------------------------

    async def _listen_loop(self) -> None:
        while True:
            conn = None
            try:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=3), 5)
                self._listening_on = conn
                await conn.execute(f"LISTEN {SITE_CHANNEL}")
                await conn.execute(f"LISTEN {LEASE_CHANNEL}")
                self.listening = True
                # What changed while not listening.
                self._wake_tick.set()
                self._wake_resync.set()
                checked = time.monotonic()
                while True:
                    async for note in conn.notifies(timeout=1.0):
                        if note.channel == LEASE_CHANNEL and note.payload != self.instance_id:
                            self._wake_tick.set()
                        elif note.channel == SITE_CHANNEL:
                            self._wake_resync.set()
                    if time.monotonic() - checked > 5.0:
                        # A silent network never ends a LISTEN: ask something, with a deadline.
                        timer = asyncio.get_running_loop().call_later(3.0, sever, conn)
                        try:
                            await conn.execute("SELECT 1")
                        finally:
                            timer.cancel()
                        checked = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # reconnect; the periodic re-read covers the gap
                if self.listening:
                    log.warning("site leases: notifications lost (%s); reconnecting", _describe(error))
                self.listening = False
            finally:
                self._listening_on = None
                if conn is not None:
                    sever(conn)
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 1.0)
            await asyncio.sleep(1.0)

    async def _resync_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_resync.wait(), self.settings.resync_s)
            self._wake_resync.clear()
            sites = self.host.active_sites()
            if not sites:
                continue
            try:
                requests = await self.store.pending(sites)
                for site_id in sites:
                    mine = [r for r in requests if r.site_id == site_id]
                    if mine:
                        await self.host.apply_requests(site_id, mine)
                marks = await self.store.policy_marks(sites)
                for site_id, mark in marks.items():
                    if self._marks.get(site_id) != mark:
                        await self.host.follow_policy(site_id)
                        self._marks[site_id] = mark
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the next round tries again
                log.debug("site requests: %s", _describe(error))

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.live_s)
            sites = self.host.active_sites()
            if not sites:
                continue
            try:
                await self.host.publish(sites)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the next round publishes again
                log.debug("live values not published: %s", _describe(error))


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}".rstrip(": ")


async def _halt(tasks: Sequence[asyncio.Task[None]], grace_s: float = STOP_GRACE_S) -> None:
    """Cancel the tasks and wait for them a while; one still running after that is left behind (logged)
    rather than keeping the instance from stopping."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        log.warning("%s did not stop within %.0f s; left behind", task.get_name(), grace_s)
