"""What the API sees of a site when instances share sites: the local controller while this instance owns
the site, otherwise the owner's published live state and requests the owner applies.

Reads come from the database (history, audit, policies: nothing changes) and, for live values, health,
alarms, hands off and the schedule, from the row the owner publishes every few seconds. Changes made here
reach the owner through the database: a hands off, hands on or alarm acknowledgement is a request row the
owner applies (woken by NOTIFY, or by its periodic re-read); a policy or demand-response event is stored
as on a single instance, and a NOTIFY tells the owner to read it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import optimizer as opt
from drivers.base import DeviceHealth, Reading
from gridctl.alarms import Alarm, AlarmBook, AlarmKind, Severity
from gridctl.cluster import live as live_codec
from gridctl.cluster.store import ClusterStore, LiveRow
from gridctl.config.models import Site
from gridctl.dispatch.audit import AuditEntry, Outcome
from gridctl.forecast.forecaster import ForecastReport
from gridctl.policy import DemandResponse, PolicyVersion, SitePolicy
from gridctl.runtime import PlannedSchedule, SiteRuntime
from gridctl.service.controller import SiteController

log = logging.getLogger(__name__)
# How long a hands off made here waits for the owner's confirmation before answering "pending".
CONFIRM_S = 10.0


class RemoteSite:
    """A site another instance owns, as published by it (refreshed at most every `refresh_s`)."""

    def __init__(self, site: Site, store: ClusterStore, *, live_s: float, stale_s: float,
                 standby: Callable[[], Awaitable[SiteController]] | None = None) -> None:
        self._site = site
        self.store = store
        self.refresh_s = min(1.0, live_s)
        self.stale_s = stale_s
        self._standby = standby
        self._standby_controller: SiteController | None = None
        self.view = live_codec.LiveView()
        self.row: LiveRow | None = None
        self._stamp = 0.0
        self._fetched = -math.inf
        self._planned: PlannedSchedule | None = None
        self._book = AlarmBook()
        self._pending: dict[str, bool] = {}  # scope -> hands off (True) or on (False) not confirmed yet
        self._tasks: set[asyncio.Task[None]] = set()

    # --- refreshing -------------------------------------------------------------------------------

    @property
    def stamp(self) -> float:
        return self._stamp

    def due(self) -> bool:
        return time.monotonic() - self._fetched >= self.refresh_s

    async def refresh(self, force: bool = False) -> None:
        if force or self.due():
            await self.store.db.open()
            rows = await self.store.live({self._site.id: self._stamp})
            await self.apply(rows[0] if rows else None)

    async def apply(self, row: LiveRow | None) -> None:
        self._fetched = time.monotonic()
        self.row = row
        if row is not None and row.live is not None:
            try:
                self.view = live_codec.decode(row.live)
                self._stamp = row.stamp
            except (ValueError, KeyError, TypeError) as error:
                log.warning("%s: live values published by %s cannot be read (%s)", self._site.id, row.instance_id,
                            error)
        if row is not None and row.schedule_id is not None and (
                self._planned is None or self._planned.schedule_id != row.schedule_id):
            _, body = await self.store.schedule(self._site.id)
            if body is not None:
                self._planned = live_codec.decode_schedule(body)
        for scope, off in list(self._pending.items()):
            if (scope in self.view.hands_off) == off:
                del self._pending[scope]
        self._book = self._alarm_book()

    def _alarm_book(self) -> AlarmBook:
        book = self.view.alarms()
        now = datetime.now(UTC)
        if self.row is None or self.row.age_s > self.stale_s:
            since = "" if self.row is None else f" for {self.row.age_s:.0f} s (last: instance {self.row.instance_id})"
            book.raise_alarm(AlarmKind.SITE_UNCONTROLLED, self._site.id,
                             f"no gridctl instance has published this site's live values{since}: nobody controls it "
                             "until another instance takes it over", now, Severity.CRITICAL)
        book.subscribe(self._acknowledged)
        return book

    # --- SiteRuntime ------------------------------------------------------------------------------

    @property
    def site(self) -> Site:
        return self._site

    @property
    def alarms(self) -> AlarmBook:
        return self._book

    @property
    def controlled_by(self) -> str | None:
        return None if self.row is None or self.row.age_s > self.stale_s else self.row.instance_id

    def latest(self) -> Mapping[str, Reading]:
        return self.view.readings

    def device_health(self) -> Mapping[str, DeviceHealth]:
        return self.view.health

    def current_schedule(self) -> PlannedSchedule | None:
        return self._planned

    def hands_off_scopes(self) -> set[str]:
        scopes = set(self.view.hands_off)
        for scope, off in self._pending.items():
            (scopes.add if off else scopes.discard)(scope)
        return scopes

    def hands_off_pending(self) -> bool:
        return bool(self._pending)

    async def hands_off(self, scope: str, actor: str, reason: str) -> list[AuditEntry]:
        result = await self._ask("hands_off", scope, actor, reason, off=True)
        now = datetime.now(UTC)
        return [AuditEntry(now, self._site.id, address, actor, reason, None, None, None, None, None, None, None,
                           Outcome.RELINQUISHED, None, None, False, False, "")
                for address in (result or {}).get("relinquished", [])]

    async def hands_on(self, scope: str, actor: str) -> None:
        await self._ask("hands_on", scope, actor, "", off=False)

    async def preview(self, policy: SitePolicy) -> opt.Schedule:
        if self._standby is None:
            raise RuntimeError(f"site {self._site.id!r} is controlled by another instance")
        controller = await self._standby()
        self._standby_controller = controller
        controller.values.update(list(self.view.readings.values()))
        return await controller.preview(policy)

    def forecast_report(self) -> ForecastReport | None:
        """The owner's forecasts are in its memory: here, those of this instance's standby controller once a
        preview made it learn from the stored history (None before)."""
        controller = self._standby_controller
        return controller.forecast_report() if controller is not None else None

    async def policy_changed(self, version: PolicyVersion) -> None:
        await self.store.notify_site(self._site.id)

    async def demand_response(self, event: DemandResponse) -> None:
        await self.store.notify_site(self._site.id)

    async def demand_response_cancelled(self, event_id: str) -> None:
        await self.store.notify_site(self._site.id)

    # --- requests ---------------------------------------------------------------------------------

    async def _ask(self, kind: str, scope: str, actor: str, reason: str, *, off: bool) -> dict | None:
        """Store the request for the owner and wait (a while) for it to say it applied it."""
        request_id = await self.store.request(self._site.id, kind, scope, actor, reason)
        self._pending[scope] = off
        deadline = time.monotonic() + CONFIRM_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            state = await self.store.request_state(request_id)
            if state is not None and state.applied:
                self._pending.pop(scope, None)
                scopes = (state.result or {}).get("scopes")
                if scopes is not None:
                    self.view.hands_off = set(scopes)
                return state.result
        log.warning("%s: %s %s waits for the instance controlling the site", self._site.id, kind, scope)
        return None

    def _acknowledged(self, alarm: Alarm) -> None:
        if alarm.acknowledged_by is None or not alarm.active:
            return
        task = asyncio.get_running_loop().create_task(self._send_ack(alarm))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_ack(self, alarm: Alarm) -> None:
        try:
            await self.store.request(self._site.id, "acknowledge", f"{alarm.kind}|{alarm.subject}",
                                     alarm.acknowledged_by or "", "")
        except Exception as error:  # the acknowledgement is lost; the operator sees the alarm unacknowledged
            log.warning("%s: acknowledging %s on %s did not reach the database (%s)", self._site.id, alarm.kind,
                        alarm.subject, error)


class SiteHandle:
    """The API's runtime for one site: the local controller while this instance runs the site, the remote
    view otherwise. Implements `gridctl.runtime.SiteRuntime`."""

    def __init__(self, remote: RemoteSite, local: Callable[[], SiteController | None],
                 after_local_hands: Callable[[], Awaitable[None]]) -> None:
        self.remote = remote
        self._local = local
        self._after_local_hands = after_local_hands

    def _target(self) -> SiteRuntime:
        controller = self._local()
        return controller if controller is not None else self.remote

    @property
    def is_local(self) -> bool:
        return self._local() is not None

    async def refresh_published(self) -> None:
        """Read the owner's published state again when another instance owns the site."""
        if not self.is_local:
            await self.remote.refresh()

    @property
    def controlled_by(self) -> str | None:
        controller = self._local()
        if controller is not None and controller.arbiter.journal is not None:
            return controller.arbiter.journal.instance_id
        return self.remote.controlled_by

    @property
    def site(self) -> Site:
        return self.remote.site

    @property
    def alarms(self) -> AlarmBook:
        return self._target().alarms

    def latest(self) -> Mapping[str, Reading]:
        return self._target().latest()

    def device_health(self) -> Mapping[str, DeviceHealth]:
        return self._target().device_health()

    def current_schedule(self) -> PlannedSchedule | None:
        return self._target().current_schedule()

    def forecast_report(self) -> ForecastReport | None:
        return self._target().forecast_report()

    def hands_off_scopes(self) -> set[str]:
        return self._target().hands_off_scopes()

    def hands_off_pending(self) -> bool:
        return not self.is_local and self.remote.hands_off_pending()

    async def hands_off(self, scope: str, actor: str, reason: str) -> list[AuditEntry]:
        target = self._target()
        entries = await target.hands_off(scope, actor, reason)
        if target is not self.remote:
            # In the database before answering: an instance taking the site over keeps it.
            await self._after_local_hands()
        return entries

    async def hands_on(self, scope: str, actor: str) -> None:
        target = self._target()
        await target.hands_on(scope, actor)
        if target is not self.remote:
            await self._after_local_hands()

    async def preview(self, policy: SitePolicy) -> opt.Schedule:
        return await self._target().preview(policy)

    async def policy_changed(self, version: PolicyVersion) -> None:
        await self._target().policy_changed(version)

    async def demand_response(self, event: DemandResponse) -> None:
        await self._target().demand_response(event)

    async def demand_response_cancelled(self, event_id: str) -> None:
        await self._target().demand_response_cancelled(event_id)
