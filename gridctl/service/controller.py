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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import optimizer as opt
from drivers.base import DeviceHealth, Driver, HealthState, Quality, Reading
from gridctl.aio import in_daemon_thread
from gridctl.alarms import AlarmBook, AlarmKind, Severity
from gridctl.assets import AssetAdapter, AssetMemory, site_adapters
from gridctl.assets.ev_pool import CHARGER_ROLES
from gridctl.clock import Clock
from gridctl.config import models as m
from gridctl.dispatch import Arbiter, AuditEntry, AuditSink, DispatchSettings, MemoryAuditSink
from gridctl.dispatch.journal import Commanded, WriteJournal
from gridctl.forecast.forecaster import ForecastReport
from gridctl.forecast.forecasts import Forecasts
from gridctl.policy import DemandResponse, PolicyVersion, SitePolicy
from gridctl.runtime import PlannedSchedule
from gridctl.service import planner
from gridctl.service.problem import build_problem
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
        # Demand-response events announced apart from the policy versions, by id.
        self.events: dict[str, DemandResponse] = {}
        self._alarms = AlarmBook()
        max_age = {d.id: timedelta(seconds=max(d.poll_interval_s, self.settings.poll_floor_s)
                                   * self.settings.stale_after_periods) for d in site.devices}
        self.values = LatestValues(max_age)
        self._health: dict[str, DeviceHealth] = {}
        self.arbiter = Arbiter(site, self.drivers, clock, self.audit, self._alarms,
                               settings=self.settings.dispatch, latest=self.values.value, journal=journal,
                               reading=self.values.get)
        self.planned: PlannedSchedule | None = None
        self.adapters = site_adapters(site)
        self.asset_memory = AssetMemory()
        self.stats = CycleStats()
        self.last_fallbacks: dict[str, str] = {}
        self.is_dark = is_dark or (lambda _moment: False)
        self._optimise_lock = asyncio.Lock()
        self.replan_requested = asyncio.Event()
        self._replan_points = {address: adapter for adapter in self.adapters for address in adapter.replan_points()}

    # ------------------------------------------------------------------ SiteRuntime

    @property
    def site(self) -> m.Site:
        return self._site

    @property
    def alarms(self) -> AlarmBook:
        return self._alarms

    def latest(self) -> Mapping[str, Reading]:
        return self.values.all()

    @property
    def controlled_by(self) -> str | None:
        """The gridctl instance writing (its journal's instance id)."""
        return self.arbiter.journal.instance_id if self.arbiter.journal is not None else None

    def device_health(self) -> Mapping[str, DeviceHealth]:
        return dict(self._health)

    def current_schedule(self) -> PlannedSchedule | None:
        return self.planned

    def forecast_report(self) -> ForecastReport | None:
        # Only a forecaster that learns from the site reports (not the simulation's oracle).
        report = getattr(self.forecaster, "report", None)
        return report(self._site) if report is not None else None

    def hands_off_scopes(self) -> set[str]:
        return self.arbiter.hands_off_scopes()

    async def hands_off(self, scope: str, actor: str, reason: str) -> list[AuditEntry]:
        return await self.arbiter.hands_off(scope, actor, reason)

    async def hands_on(self, scope: str, actor: str) -> None:
        await self.arbiter.hands_on(scope, actor)
        log.info("%s: hands on %s by %s", self._site.id, scope, actor)

    async def preview(self, policy: SitePolicy) -> opt.Schedule:
        problem = await self._problem(self._with_events(policy), self.clock.now())
        return await in_daemon_thread(opt.solve, problem, self.settings.solver, name=f"solve {self._site.id}")

    async def policy_changed(self, version: PolicyVersion) -> None:
        self.policy = version
        self.replan_requested.set()

    async def demand_response(self, event: DemandResponse) -> None:
        self.events[event.id] = event
        self.replan_requested.set()

    async def demand_response_cancelled(self, event_id: str) -> None:
        # The dispatch stops limiting import at once; the re-plan drops the event from the schedule.
        if self.events.pop(event_id, None) is not None:
            self.replan_requested.set()

    def policy_in_force(self) -> SitePolicy:
        """The policy version in force with the announced demand-response events."""
        return self._with_events(self.policy.policy if self.policy else SitePolicy())

    def _with_events(self, policy: SitePolicy) -> SitePolicy:
        if not self.events:
            return policy
        events = [e for e in policy.demand_response if e.id not in self.events] + list(self.events.values())
        return policy.model_copy(update={"demand_response": events})

    # ------------------------------------------------------------------ the cycle

    async def ingest(self, device_id: str, readings: list[Reading], health: DeviceHealth) -> None:
        """A device's poll: remember it, store it, raise or clear its alarms."""
        if self._calls_for_replan(readings):
            # E.g. a car just arrived: plan for it now rather than at the next scheduled optimisation.
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

    def _calls_for_replan(self, readings: list[Reading]) -> bool:
        if self.settings.kind == ControllerKind.BASELINE:
            return False
        for reading in readings:
            adapter = self._replan_points.get(reading.address)
            if adapter is None or reading.quality != Quality.GOOD:
                continue
            if adapter.replan_on(reading.address, self.values.value(reading.address), reading.value):
                return True
        return False

    def _import_limit_kw(self, now: datetime) -> float:
        """Import allowed now: the connection, the policy's own limit, and any demand-response event."""
        policy = self.policy_in_force()
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
            self.events = {i: e for i, e in self.events.items() if e.end > now}
            policy = self.policy_in_force()
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
        for adapter in self.adapters:
            adapter.observe(snapshot, self.asset_memory)
        if self.settings.kind == ControllerKind.BASELINE:
            requests = planner.baseline(self._site, snapshot, now, self.is_dark)
            self.last_fallbacks = {}
        else:
            result = planner.plan(self._site, self.planned, snapshot, now, self.is_dark,
                                  import_limit_kw=self._import_limit_kw(now),
                                  correct=self.settings.correct_between_plans, policy=self.policy_in_force())
            requests = result.requests
            self._stale_alarms(result, now)
            self.last_fallbacks = result.fallbacks
        for adapter in self.adapters:
            requests = adapter.hold(requests, now, self.asset_memory)
        entries = []
        for request in requests:
            entry = await self.arbiter.write(request)
            if entry is not None:
                entries.append(entry)
        for adapter in self.adapters:
            adapter.remember(requests, now, self.asset_memory)
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

    async def recover(self, left_by: Iterable[Commanded] | None = None) -> list[AuditEntry]:
        """Before the first write: settle what a run that stopped abruptly left commanded (its journal), or
        what the instance this site was taken over from held (`left_by`)."""
        return await self.arbiter.recover(planned_points(self.adapters), left_by)

    async def shutdown(self) -> list[AuditEntry]:
        """Relinquish every lease (staggered) and close the drivers, within a bounded time: devices that
        don't answer fall back on their own when their lease runs out."""
        try:
            entries = await asyncio.wait_for(self.arbiter.release_all(), self.settings.shutdown_timeout_s)
        except TimeoutError:
            log.warning("%s: relinquishing took over %.0f s; unanswered devices will fall back on their leases",
                        self._site.id, self.settings.shutdown_timeout_s)
            entries = []
        await self._close_drivers()
        return entries

    async def abandon(self) -> None:
        """Send nothing more and relinquish nothing (another instance takes the site over, or the devices'
        own fallbacks act), and close the drivers."""
        self.arbiter.close()
        await self._close_drivers()

    async def _close_drivers(self) -> None:
        for driver in self.drivers.values():
            try:
                await driver.close()
            except Exception as error:  # closing must go on for the other devices
                log.warning("%s: close failed: %s", driver.device_id, error)

    # ------------------------------------------------------------------ internals

    async def _forecast_and_solve(self, policy: SitePolicy, now: datetime) -> opt.Schedule:
        problem = await self._problem(policy, now)
        # The solver's own time limit bounds the thread; the caller's timeout bounds the cycle. A stop does
        # not wait for a solve under way: nobody would follow its plan.
        return await in_daemon_thread(opt.solve, problem, self.settings.solver, name=f"solve {self._site.id}")

    async def _problem(self, policy: SitePolicy, now: datetime) -> opt.Problem:
        step = timedelta(minutes=policy.step_minutes)
        start = _floor(now, step)
        n_steps = int(timedelta(hours=policy.horizon_hours) / step)
        snapshot = self.values.snapshot(now)
        forecasts = await self.forecaster.forecast(self._site, snapshot, start, n_steps, step)
        return build_problem(self._site, policy, snapshot, forecasts, self.asset_memory)

    def _optimiser_failed(self, reason: str, now: datetime) -> PlannedSchedule | None:
        self.stats.optimiser_failures += 1
        log.warning("%s: optimisation failed: %s", self._site.id, reason)
        self._alarms.raise_alarm(AlarmKind.OPTIMIZER_FAILED, self._site.id,
                                 f"optimisation failed ({reason}); the last valid schedule runs until it expires",
                                 now)
        return self.planned

    def _stale_alarms(self, result: planner.Plan, now: datetime) -> None:
        """An asset whose watched inputs are stale is on its safe default: say so, and which inputs, until
        they are fresh again (whether or not a schedule is in force)."""
        for adapter in self.adapters:
            stale = result.stale.get(adapter.id)
            if stale:
                self._alarms.raise_alarm(AlarmKind.STALE_POINT, adapter.id,
                                         f"{adapter.id} on safe defaults: {planner.STALE_INPUT} {', '.join(stale)}",
                                         now)
            else:
                self._alarms.clear(AlarmKind.STALE_POINT, adapter.id, now)

    def _comfort_alarms(self, schedule: opt.Schedule, now: datetime) -> None:
        zones = {a.id for a in self.adapters if a.comfort_alarm}
        soon = now + timedelta(hours=1)
        hot = {v.asset_id for v in schedule.violations
               if v.asset_id in zones and v.start < soon and v.amount > 0.5}
        for zone in zones:
            if zone in hot:
                self._alarms.raise_alarm(AlarmKind.COMFORT_VIOLATION, zone,
                                         f"{zone}: comfort band cannot be held within the next hour", now)
            else:
                self._alarms.clear(AlarmKind.COMFORT_VIOLATION, zone, now)


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=moment.tzinfo)
    return epoch + ((moment - epoch) // step) * step


def planned_points(adapters: Iterable[AssetAdapter]) -> set[str]:
    """Points the assets command in normal running: those bound to a writable role, chargers' included."""
    out: set[str] = set()
    for adapter in adapters:
        bindings = [(adapter.asset.points, adapter.roles)]
        bindings += [(charger.points, CHARGER_ROLES) for charger in getattr(adapter.asset, "chargers", ())]
        for points, roles in bindings:
            out |= {address for name, address in points.items() if name in roles and roles[name].writable}
    return out
