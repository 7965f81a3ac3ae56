"""The service host's side of sharing sites (`gridctl run --cluster`): starting a site when this instance
takes its lease, stopping it when the lease goes, applying other instances' requests, publishing live
values, and the runtimes the API serves for every site.

Taking a site over, before its first write: the instance's own journal is shipped (what it did there
before is in the database), the site's hands off is read from the database (authoritative: any instance
may have changed it) with the requests still pending, the points the previous owners still held are read
from their shipped audit (the last record of each point, by lease epoch and journal order), the policy
and demand-response events are read, and the forecasts learn from the stored history. Then the arbiter's
recovery reclaims what the plan commands (written again at the first dispatch) and relinquishes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gridctl.api.db import PostgresDatabase
from gridctl.api.policies import follow
from gridctl.api.store import ApiStore
from gridctl.cluster import live as live_codec
from gridctl.cluster.coordinator import ClusterSettings, Coordinator
from gridctl.cluster.handle import RemoteSite, SiteHandle
from gridctl.cluster.store import Claim, ClusterStore, SiteRequest
from gridctl.config.models import Site
from gridctl.dispatch.audit import Outcome
from gridctl.dispatch.fencing import SiteLease
from gridctl.dispatch.journal import HandsOff
from gridctl.service.controller import SiteController

if TYPE_CHECKING:
    from gridctl.service.runner import ServiceHost

log = logging.getLogger(__name__)
# Longest a hands off or a hand-over waits for the journal to reach the database.
SHIP_WAIT_S = 5.0


def write_budget_s(site: Site) -> float:
    """The longest a write to one of the site's devices may take: write and read back, each with its retries."""
    return max((2 * d.timeout_s * (d.retries + 1) for d in site.devices), default=1.0)


class ClusterHost:
    def __init__(self, host: ServiceHost, settings: ClusterSettings) -> None:
        self.host = host
        self.settings = settings
        statement_s = max(1.0, min(settings.lease_s / 4, 3.0))
        # Leases get their own connections, with short deadlines: nothing queues them behind a publication.
        self.lease_db = PostgresDatabase(host.db, min_size=1, max_size=2, timeout_s=statement_s,
                                         name="gridctl-leases")
        self.db = PostgresDatabase(host.db, min_size=1, max_size=4, timeout_s=10.0, name="gridctl-cluster")
        self.store = ClusterStore(self.db, host.instance_id)
        self.api = ApiStore(self.db)
        self.active: set[str] = set()
        self._warmed: set[str] = set()
        self._published: dict[str, str] = {}
        stale_s = settings.lease_s + 3 * settings.live_s
        self.remotes = {s.site.id: RemoteSite(s.site, self.store, live_s=settings.live_s, stale_s=stale_s,
                                              standby=functools.partial(self._standby, s.site.id))
                        for s in host.sites}
        self.handles = {site_id: SiteHandle(remote, functools.partial(self._local, site_id), self.ship_now)
                        for site_id, remote in self.remotes.items()}
        self.coordinator = Coordinator(ClusterStore(self.lease_db, host.instance_id), host.db,
                                       [s.site.id for s in host.sites], self, settings)

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.coordinator.start()

    async def stop(self) -> None:
        await self.coordinator.stop()
        await self.db.close()
        await self.lease_db.close()

    # --- SiteHost ------------------------------------------------------------------------------------

    def write_budget_s(self, site_id: str) -> float:
        return write_budget_s(self.host.site(site_id).site)

    def active_sites(self) -> list[str]:
        return sorted(self.active)

    async def take(self, site_id: str, lease: SiteLease, claim: Claim) -> None:
        host = self.host
        service = host.site(site_id)
        controller = service.controller
        arbiter = controller.arbiter
        arbiter.lease = lease
        await self.db.open()
        await self.ship_now()
        stored = {r.scope: HandsOff(r.scope, r.actor, r.reason, r.since) for r in await self.api.hands_off(site_id)}
        await arbiter.restore_hands_off(stored)
        await self.apply_requests(site_id, await self.store.pending([site_id]), publish=False)
        writable = [address for address, _device, point in service.site.all_points() if point.writable]
        left = await self.store.left_commanded(site_id, writable)
        if arbiter.journal is not None:
            await arbiter.journal.replace_commanded(site_id, left)
        previous = ("nobody" if claim.previous_owner is None
                    else f"instance {claim.previous_owner} (epoch {claim.previous_epoch})")
        await arbiter.note_site(Outcome.TAKEN_OVER, "gridctl:lease",
                                f"took the site over under lease epoch {lease.epoch} from {previous}; "
                                f"{len(left)} point(s) held before")
        await follow(self.api, controller, controller.policy, set(controller.events), host.clock.now())
        if site_id not in self._warmed:
            await service.warm_up(host.historian)
        await service.start(left_by=left)
        service.schedule(host.scheduler)
        self.active.add(site_id)
        log.warning("%s: controlled by this instance under lease epoch %d (from %s)", site_id, lease.epoch, previous)
        await self.publish([site_id])

    async def drop(self, site_id: str, why: str, outcome: Outcome, *, relinquish: bool = False) -> None:
        self.active.discard(site_id)
        service = self.host.site(site_id)
        # Why, in the journal first: stopping may wait for a job under way.
        await service.controller.arbiter.note_site(outcome, "gridctl:lease", why)
        started = asyncio.get_running_loop().time()
        if relinquish:
            await service.stop()
        else:
            await service.abandon()
        log.info("%s: stopped here in %.1f s", site_id, asyncio.get_running_loop().time() - started)
        # The next owner reads what this one held from the database.
        await self.ship_now()
        self._warmed.discard(site_id)
        self._published.pop(site_id, None)
        self.host.renew_service(site_id)

    async def apply_requests(self, site_id: str, requests: Sequence[SiteRequest], *, publish: bool = True) -> None:
        """Apply the hands off, hands on and acknowledgements asked on other instances, in order; each is
        in the database (shipped) before it is confirmed."""
        if not requests:
            return
        controller = self.host.site(site_id).controller
        arbiter = controller.arbiter
        results: list[tuple[int, dict[str, Any]]] = []
        for request in requests:
            result: dict[str, Any] = {}
            try:
                if request.kind == "hands_off":
                    entries = await arbiter.hands_off(request.scope, request.actor, request.reason)
                    result["relinquished"] = [e.address for e in entries if e.outcome is Outcome.RELINQUISHED]
                elif request.kind == "hands_on":
                    await controller.hands_on(request.scope, request.actor)
                elif request.kind == "acknowledge":
                    kind, _, subject = request.scope.partition("|")
                    book = controller.alarms
                    if book.is_active(kind, subject):  # type: ignore[arg-type]
                        book.acknowledge(kind, subject, request.actor, self.host.clock.now())  # type: ignore[arg-type]
                else:
                    result["error"] = f"unknown request {request.kind!r}"
            except (KeyError, ValueError) as error:
                result["error"] = str(error)
            result["scopes"] = sorted(arbiter.hands_off_scopes())
            log.info("%s: %s %s by %s (asked on another instance)", site_id, request.kind, request.scope,
                     request.actor)
            results.append((request.id, result))
        await self.ship_now()
        epoch = arbiter.lease.epoch if arbiter.lease is not None else 0
        for request_id, result in results:
            await self.store.applied(request_id, epoch, result)
        if publish:
            await self.publish([site_id])

    async def follow_policy(self, site_id: str) -> None:
        if site_id in self.active:
            controller = self.host.site(site_id).controller
            await follow(self.api, controller, controller.policy, set(controller.events), self.host.clock.now())

    async def publish(self, site_ids: Sequence[str]) -> None:
        """One row of live values per site (and the schedule, when new)."""
        pieces = []
        for site_id in site_ids:
            if site_id not in self.active:
                continue
            controller = self.host.site(site_id).controller
            lease = controller.arbiter.lease
            if lease is None or lease.ended is not None:
                continue
            book = controller.alarms
            pieces.append((site_id, lease.epoch, dict(controller.latest()), controller.device_health(),
                           book.active(), book.history(), controller.hands_off_scopes(), controller.current_schedule()))
        if not pieces:
            return

        def encode() -> tuple[list[tuple[str, int, bytes]], list[tuple[str, int, str, bytes]]]:
            snapshots, schedules = [], []
            for site_id, epoch, latest, health, active, history, scopes, planned in pieces:
                snapshots.append((site_id, epoch, live_codec.encode(latest, health, active, history, scopes)))
                if planned is not None and self._published.get(site_id) != planned.schedule_id:
                    schedules.append((site_id, epoch, planned.schedule_id, live_codec.encode_schedule(planned)))
            return snapshots, schedules

        snapshots, schedules = await asyncio.to_thread(encode)
        await self.store.publish(snapshots, schedules)
        for site_id, _epoch, schedule_id, _body in schedules:
            self._published[site_id] = schedule_id

    # --- helpers -------------------------------------------------------------------------------------

    async def ship_now(self) -> None:
        """Ship the journal to the database now, for a while at most (it ships on its own anyway)."""
        try:
            await asyncio.wait_for(self.host.shipper.drain(), SHIP_WAIT_S)
        except Exception as error:  # the database is away: the records ship when it is back
            log.warning("write journal not shipped at once (%s): it ships when the database answers",
                        f"{type(error).__name__}: {error}".rstrip(": "))

    def _local(self, site_id: str) -> SiteController | None:
        return self.host.site(site_id).controller if site_id in self.active else None

    async def _standby(self, site_id: str) -> SiteController:
        """The controller of a site this instance does not run, for previews: its forecasts learn from the
        stored history once."""
        service = self.host.site(site_id)
        if site_id not in self._warmed:
            self._warmed.add(site_id)
            with contextlib.suppress(Exception):
                await service.warm_up(self.host.historian)
        return service.controller
