"""One site's control loop: ingest polls → snapshot → forecast + optimise when due → dispatch.

The same object runs under APScheduler on the wall clock (`gridctl run`) and under a simulated
clock (`gridctl simulate`): the caller decides when each step happens, the controller decides what.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import optimizer as opt
from drivers.base import DeviceHealth, Driver, HealthState, Quality, Reading
from gridctl.alarms import AlarmBook, AlarmKind, Severity
from gridctl.clock import Clock
from gridctl.config import models as m
from gridctl.dispatch import Arbiter, AuditEntry, AuditSink, DispatchSettings, MemoryAuditSink, WriteRequest
from gridctl.dispatch.journal import WriteJournal
from gridctl.policy import DemandResponse, PolicyVersion, SitePolicy
from gridctl.runtime import PlannedSchedule
from gridctl.service import planner
from gridctl.service.forecasts import Forecasts
from gridctl.service.problem import AssetState, build_problem
from gridctl.service.snapshot import LatestValues, Snapshot

log = logging.getLogger(__name__)


class Forecaster(Protocol):
    async def forecast(self, site: m.Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts: ...


class ReadingsSink(Protocol):
    """Where polled readings go (the history recorder, which spools while the database is away)."""

    async def record(self, readings: Iterable[Reading]) -> None: ...


class ControllerKind(StrEnum):
    BASELINE = "baseline"
    GRIDCTL = "gridctl"


@dataclass(frozen=True)
class ControllerSettings:
    kind: ControllerKind = ControllerKind.GRIDCTL
    solver: opt.Settings = field(default_factory=lambda: opt.Settings(time_limit_s=20.0, mip_gap=0.01))
    # Longest the optimiser may take before the cycle gives up on it (the last valid schedule runs).
    optimise_timeout_s: float = 60.0
    # A schedule stays valid this long after it was made, then the assets fall back to defaults.
    schedule_validity: timedelta = timedelta(hours=2)
    # A point older than this many poll periods of its device is stale.
    stale_after_periods: float = 3.0
    # Longest a shutdown waits for relinquishing to finish.
    shutdown_timeout_s: float = 60.0
    # Shortest poll period actually used (in the clock's time): an accelerated clock polls less often.
    poll_floor_s: float = 0.0
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    # Absorb forecast errors between plans: batteries trimmed to the plan's grid exchange, empty chargers
    # offering what the plan leaves so an arriving car starts at once.
    correct_between_plans: bool = True


@dataclass
class CycleStats:
    optimisations: int = 0
    optimiser_failures: int = 0
    last_solve_s: float | None = None
    solve_seconds_total: float = 0.0
    dispatch_cycles: int = 0
    writes: int = 0


class SiteController:
    """Implements `gridctl.runtime.SiteRuntime` for one site."""

    def __init__(self, site: m.Site, drivers: Mapping[str, Driver], clock: Clock, forecaster: Forecaster,
                 *, policy: PolicyVersion | None = None, history: ReadingsSink | None = None,
                 audit: AuditSink | None = None, settings: ControllerSettings | None = None,
                 is_dark: planner.IsDark | None = None, journal: WriteJournal | None = None) -> None:
        self._site = site
        self.drivers = dict(drivers)
        self.clock = clock
        self.forecaster = forecaster
        self.settings = settings or ControllerSettings()
        self.history = history
        self.audit = audit or MemoryAuditSink()
        self.policy = policy
        self._alarms = AlarmBook()
        max_age = {d.id: timedelta(seconds=max(d.poll_interval_s, self.settings.poll_floor_s)
                                   * self.settings.stale_after_periods) for d in site.devices}
        self.values = LatestValues(max_age)
        self._health: dict[str, DeviceHealth] = {}
        self.arbiter = Arbiter(site, self.drivers, clock, self.audit, self._alarms,
                               settings=self.settings.dispatch, latest=self.values.value, journal=journal,
                               reading=self.values.get)
        self.planned: PlannedSchedule | None = None
        self.asset_state = AssetState()
        self.stats = CycleStats()
        self.last_fallbacks: dict[str, str] = {}
        self.is_dark = is_dark or (lambda _moment: False)
        self._optimise_lock = asyncio.Lock()
        self.replan_requested = asyncio.Event()
        self._plug_points = {c.points["plug_state"] for a in site.assets if isinstance(a, m.EvChargerPool)
                             for c in a.chargers}

    # ------------------------------------------------------------------ SiteRuntime

    @property
    def site(self) -> m.Site:
        return self._site

    @property
    def alarms(self) -> AlarmBook:
        return self._alarms

    def latest(self) -> Mapping[str, Reading]:
        return self.values.all()

    def device_health(self) -> Mapping[str, DeviceHealth]:
        return dict(self._health)

    def current_schedule(self) -> PlannedSchedule | None:
        return self.planned

    def hands_off_scopes(self) -> set[str]:
        return self.arbiter.hands_off_scopes()

    async def hands_off(self, scope: str, actor: str, reason: str) -> list[AuditEntry]:
        return await self.arbiter.hands_off(scope, actor, reason)

    async def hands_on(self, scope: str, actor: str) -> None:
        await self.arbiter.hands_on(scope, actor)
        log.info("%s: hands on %s by %s", self._site.id, scope, actor)

    async def preview(self, policy: SitePolicy) -> opt.Schedule:
        problem = await self._problem(policy, self.clock.now())
        return await asyncio.to_thread(opt.solve, problem, self.settings.solver)

    async def policy_changed(self, version: PolicyVersion) -> None:
        self.policy = version
        self.replan_requested.set()

    async def demand_response(self, event: DemandResponse) -> None:
        current = self.policy.policy if self.policy else SitePolicy()
        events = [e for e in current.demand_response if e.id != event.id] + [event]
        policy = current.model_copy(update={"demand_response": events})
        version = (self.policy.version + 1) if self.policy else 1
        self.policy = PolicyVersion(site_id=self._site.id, version=version, policy=policy,
                                    author="demand-response", comment=f"event {event.id}",
                                    created_at=self.clock.now())
        self.replan_requested.set()

    # ------------------------------------------------------------------ the cycle

    async def ingest(self, device_id: str, readings: list[Reading], health: DeviceHealth) -> None:
        """A device's poll: remember it, store it, raise or clear its alarms."""
        if self._plug_ins(readings):
            # A car just arrived: plan for it now rather than at the next scheduled optimisation.
            self.replan_requested.set()
        self.values.update(readings)
        self._health[device_id] = health
        now = self.clock.now()
        if health.state == HealthState.OFFLINE:
            self._alarms.raise_alarm(AlarmKind.DEVICE_OFFLINE, device_id,
                                     f"{device_id} is not answering: {health.last_error}", now, Severity.CRITICAL)
        elif health.state == HealthState.OK:
            self._alarms.clear(AlarmKind.DEVICE_OFFLINE, device_id, now)
        if self.history is not None and readings:
            await self.history.record(readings)

    def _plug_ins(self, readings: list[Reading]) -> bool:
        if self.settings.kind == ControllerKind.BASELINE:
            return False
        for reading in readings:
            if reading.address not in self._plug_points or reading.quality != Quality.GOOD:
                continue
            before = self.values.value(reading.address)
            was_plugged = before is not None and int(before) in planner.PLUGGED_STATES
            now_plugged = reading.value is not None and int(reading.value) in planner.PLUGGED_STATES
            if now_plugged and not was_plugged:
                return True
        return False

    def _import_limit_kw(self, now: datetime) -> float:
        """Import allowed now: the connection, the policy's own limit, and any demand-response event."""
        policy = self.policy.policy if self.policy else SitePolicy()
        limits = [self._site.grid.import_limit_kw]
        if policy.import_limit_kw is not None:
            limits.append(policy.import_limit_kw)
        if policy.demand_response_participation:
            limits += [e.max_import_kw for e in policy.demand_response if e.start <= now < e.end]
        return min(limits)

    def snapshot(self) -> Snapshot:
        return self.values.snapshot(self.clock.now())

    async def optimise(self) -> PlannedSchedule | None:
        """Forecast and solve; on failure or timeout keep the last valid schedule and raise an alarm."""
        if self.settings.kind == ControllerKind.BASELINE:
            return None
        async with self._optimise_lock:
            self.replan_requested.clear()
            now = self.clock.now()
            policy = self.policy.policy if self.policy else SitePolicy()
            started = time.perf_counter()
            try:
                schedule = await asyncio.wait_for(self._forecast_and_solve(policy, now),
                                                  self.settings.optimise_timeout_s)
            except TimeoutError:
                return self._optimiser_failed(f"no schedule within {self.settings.optimise_timeout_s} s", now)
            except Exception as error:  # any failure leaves the last schedule in force
                return self._optimiser_failed(f"{type(error).__name__}: {error}", now)
            elapsed = time.perf_counter() - started
            self.stats.optimisations += 1
            self.stats.last_solve_s = elapsed
            self.stats.solve_seconds_total += elapsed
            if not schedule.has_solution:
                return self._optimiser_failed(f"solver status {schedule.status}", now)
            self._alarms.clear(AlarmKind.OPTIMIZER_FAILED, self._site.id, now)
            self.planned = PlannedSchedule(
                schedule_id=f"{now:%Y%m%dT%H%M}-{uuid.uuid4().hex[:6]}", site_id=self._site.id, created_at=now,
                valid_until=now + self.settings.schedule_validity,
                policy_version=self.policy.version if self.policy else None, schedule=schedule)
            self._comfort_alarms(schedule, now)
            return self.planned

    async def dispatch(self) -> list[AuditEntry]:
        """Write this cycle's commands through the arbiter."""
        now = self.clock.now()
        snapshot = self.snapshot()
        if self.settings.kind == ControllerKind.BASELINE:
            requests = planner.baseline(self._site, snapshot, now, self.is_dark)
            self.last_fallbacks = {}
        else:
            result = planner.plan(self._site, self.planned, snapshot, now, self.is_dark,
                                  import_limit_kw=self._import_limit_kw(now),
                                  correct=self.settings.correct_between_plans)
            requests = result.requests
            self._fallback_alarms(result.fallbacks, now)
            self.last_fallbacks = result.fallbacks
        requests = self._keep_programs_running(requests, now)
        entries = []
        for request in requests:
            entry = await self.arbiter.write(request)
            if entry is not None:
                entries.append(entry)
        self._remember_runs(requests, now)
        self.stats.dispatch_cycles += 1
        self.stats.writes += len(entries)
        return entries

    async def heartbeat(self) -> list[AuditEntry]:
        """The device watchdogs' heartbeats that are due."""
        return await self.arbiter.beat_watchdogs()

    async def renew(self) -> list[AuditEntry]:
        entries = await self.heartbeat()
        entries += await self.arbiter.renew_leases()
        await self.arbiter.review_overrides()
        return entries

    async def recover(self) -> list[AuditEntry]:
        """Before the first write: settle what a run that stopped abruptly left commanded."""
        return await self.arbiter.recover()

    async def shutdown(self) -> list[AuditEntry]:
        """Relinquish every lease (staggered) and close the drivers, within a bounded time: devices that
        don't answer fall back on their own when their lease runs out."""
        try:
            entries = await asyncio.wait_for(self.arbiter.release_all(), self.settings.shutdown_timeout_s)
        except TimeoutError:
            log.warning("%s: relinquishing took over %.0f s; unanswered devices will fall back on their leases",
                        self._site.id, self.settings.shutdown_timeout_s)
            entries = []
        for driver in self.drivers.values():
            try:
                await driver.close()
            except Exception as error:  # closing must go on for the other devices
                log.warning("%s: close failed: %s", driver.device_id, error)
        return entries

    # ------------------------------------------------------------------ internals

    async def _forecast_and_solve(self, policy: SitePolicy, now: datetime) -> opt.Schedule:
        problem = await self._problem(policy, now)
        # The solver's own time limit bounds the thread; the caller's timeout bounds the cycle.
        return await asyncio.to_thread(opt.solve, problem, self.settings.solver)

    async def _problem(self, policy: SitePolicy, now: datetime) -> opt.Problem:
        step = timedelta(minutes=policy.step_minutes)
        start = _floor(now, step)
        n_steps = int(timedelta(hours=policy.horizon_hours) / step)
        snapshot = self.values.snapshot(now)
        forecasts = await self.forecaster.forecast(self._site, snapshot, start, n_steps, step)
        return build_problem(self._site, policy, snapshot, forecasts, self.asset_state)

    def _optimiser_failed(self, reason: str, now: datetime) -> PlannedSchedule | None:
        self.stats.optimiser_failures += 1
        log.warning("%s: optimisation failed: %s", self._site.id, reason)
        self._alarms.raise_alarm(AlarmKind.OPTIMIZER_FAILED, self._site.id,
                                 f"optimisation failed ({reason}); the last valid schedule runs until it expires",
                                 now)
        return self.planned

    def _fallback_alarms(self, fallbacks: dict[str, str], now: datetime) -> None:
        for asset in self._site.assets:
            reason = fallbacks.get(asset.id, "")
            if reason.startswith("stale input"):
                self._alarms.raise_alarm(AlarmKind.STALE_POINT, asset.id, f"{asset.id} on safe defaults: {reason}",
                                         now)
            else:
                self._alarms.clear(AlarmKind.STALE_POINT, asset.id, now)

    def _comfort_alarms(self, schedule: opt.Schedule, now: datetime) -> None:
        zones = {a.id for a in self._site.assets if isinstance(a, m.ThermalZone)}
        soon = now + timedelta(hours=1)
        hot = {v.asset_id for v in schedule.violations
               if v.asset_id in zones and v.start < soon and v.amount > 0.5}
        for zone in zones:
            if zone in hot:
                self._alarms.raise_alarm(AlarmKind.COMFORT_VIOLATION, zone,
                                         f"{zone}: comfort band cannot be held within the next hour", now)
            else:
                self._alarms.clear(AlarmKind.COMFORT_VIOLATION, zone, now)

    def _keep_programs_running(self, requests: list[WriteRequest], now: datetime) -> list[WriteRequest]:
        starts = {a.points["start"]: a for a in self._site.assets if isinstance(a, m.DeferrableAppliance)}
        out = []
        for request in requests:
            asset = starts.get(request.address)
            until = self.asset_state.deferrable_running_until.get(asset.id) if asset else None
            if asset is not None and until is not None and now < until and request.value is not True:
                request = replace(request, value=True, reason=f"{request.reason}; program runs until {until:%H:%M}")
            out.append(request)
        return out

    def _remember_runs(self, requests: list[WriteRequest], now: datetime) -> None:
        starts = {a.points["start"]: a for a in self._site.assets if isinstance(a, m.DeferrableAppliance)}
        for request in requests:
            asset = starts.get(request.address)
            if asset is None or request.value is not True:
                continue
            until = self.asset_state.deferrable_running_until.get(asset.id)
            if until is None or now >= until:
                self.asset_state.deferrable_running_until[asset.id] = now + timedelta(minutes=asset.duration_min)
                self.asset_state.deferrable_done[asset.id] = now.astimezone(self._site.tz).date()


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=moment.tzinfo)
    return epoch + ((moment - epoch) // step) * step
