"""The control service on a clock, driven by APScheduler: `gridctl run` and `gridctl demo`.

Per site: each device polls on its own period (the poller's tasks), dispatch every step, lease
renewal, forecast + optimise every 15 minutes and at once on a policy change, a demand-response event
or a car plugging in. Per database: rollups and retention. Stopping relinquishes every lease,
staggered, before the drivers close, then flushes history.

Intervals are in the service clock's time; with an accelerated simulated clock (`speed` > 1) the
scheduler runs them `speed` times more often in wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from drivers.factory import make_driver, offset_ports
from drivers.poller import PollBatch, PolledDevice, Poller
from gridctl import paths
from gridctl.aio import stop_task
from gridctl.alarms import AlarmKind, Severity
from gridctl.clock import Clock, WallClock
from gridctl.config import Site, load_site
from gridctl.config.loader import site_file
from gridctl.config.models import WeatherProvider
from gridctl.dispatch import AuditSink
from gridctl.dispatch.journal import Commanded, WriteJournal
from gridctl.dispatch.shipper import JournalShipper
from gridctl.fieldbus import device_spec
from gridctl.forecast.forecaster import SignalForecaster, last_value_points, observed_points
from gridctl.forecast.openmeteo import OpenMeteoClient
from gridctl.forecast.sun import dark_by_sun
from gridctl.history import Aggregate, Historian, HistorianUnavailable, open_historian
from gridctl.history.migrations import SITE_KEYED_VERSION
from gridctl.history.recorder import HistoryStatus, Recorder
from gridctl.history.spool import Spool, SpoolAlarm
from gridctl.policy import PolicyVersion
from gridctl.service.controller import ControllerSettings, SiteController
from gridctl.service.metrics import ServiceMetrics

if TYPE_CHECKING:
    from gridctl.cluster.coordinator import ClusterSettings

log = logging.getLogger(__name__)
# Stored history reaches the forecaster as quarter-hour means.
WARM_UP_BUCKET = timedelta(minutes=15)
# Longest a stopping site waits for its job under way before relinquishing anyway.
STOP_WAIT_S = 15.0


@dataclass(frozen=True)
class Cadence:
    dispatch: timedelta = timedelta(minutes=1)
    optimise: timedelta = timedelta(minutes=15)
    renew: timedelta = timedelta(seconds=5)
    rollups: timedelta = timedelta(minutes=15)
    retention: timedelta = timedelta(hours=24)
    # Events (a car plugging in) re-plan at once, but no more often than this.
    replan_gap: timedelta = timedelta(seconds=30)


@dataclass
class SiteOptions:
    site: Path
    port_offset: int = 0
    cadence: Cadence = field(default_factory=Cadence)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    policy: PolicyVersion | None = None
    # A weather provider instead of the site file's (the demo's simulated provider on loopback).
    weather: WeatherProvider | None = None


class SiteService:
    """One site's poller, controller and jobs."""

    def __init__(self, options: SiteOptions, *, recorder: Recorder, clock: Clock, metrics: ServiceMetrics,
                 audit: AuditSink | None = None, speed: float = 1.0, min_poll_s: float = 1.0,
                 site: Site | None = None, journal: WriteJournal | None = None) -> None:
        self.options = options
        self.clock = clock
        self.speed = speed
        self.metrics = metrics
        self.site: Site = site or load_site(options.site)
        site_dir = site_file(options.site).parent
        specs = [offset_ports(device_spec(d, site_dir, bacnet=self.site.bacnet), options.port_offset)
                 for d in self.site.devices]
        self.drivers = {spec.id: make_driver(spec) for spec in specs}
        self._protocols = {d.id: d.protocol for d in self.site.devices}
        # The site's weather provider (its site file's `weather`), when it has one.
        provider = options.weather or self.site.weather
        self.weather = None if provider is None else OpenMeteoClient(provider, self.site.location.latitude,
                                                                     self.site.location.longitude)
        self.forecaster = SignalForecaster(weather_service=self.weather, learn_in_background=True)
        # Relinquishing is staggered in the clock's time too.
        dispatch = dataclasses.replace(options.controller.dispatch,
                                       relinquish_stagger_s=options.controller.dispatch.relinquish_stagger_s / speed)
        settings = dataclasses.replace(options.controller, poll_floor_s=min_poll_s * speed, dispatch=dispatch)
        self.controller = SiteController(self.site, self.drivers, clock, self.forecaster,
                                         history=recorder.for_site(self.site.id),
                                         audit=audit, settings=settings, policy=options.policy,
                                         is_dark=dark_by_sun(self.site), journal=journal)
        periods = [max(spec.poll_interval_s / speed, min_poll_s) for spec in specs]
        self.poller = Poller([PolledDevice(self.drivers[s.id], p) for s, p in zip(specs, periods, strict=True)],
                             self._on_poll, phase_key=self.site.id)
        self._replanner: asyncio.Task[None] | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._stopping = False
        # Jobs of one site run one at a time; stopping waits for the one under way.
        self._busy = asyncio.Lock()
        # Heartbeats run outside that lock (a long dispatch must not delay them); stopping waits for one
        # under way, so that no write is cut between its journalled intent and its outcome.
        self._beating = asyncio.Lock()
        # A clock other than the wall clock (simulated time) re-stamps readings: drivers stamp wall time.
        self._restamp = not isinstance(clock, WallClock)

    async def _on_poll(self, batch: PollBatch) -> None:
        started = batch.due if batch.started is None else batch.started
        qualities = Counter(r.quality.value for r in batch.readings)
        self.metrics.observe_poll(self.site.id, batch.device_id, self._protocols[batch.device_id],
                                  lateness_s=started - batch.due, duration_s=batch.finished - started,
                                  health=batch.health.state, qualities=qualities,
                                  missed_ticks=batch.skipped_before)
        readings = batch.readings
        if self._restamp:
            now = self.clock.now()
            readings = [dataclasses.replace(r, ts=now) for r in readings]
        try:
            await self.controller.ingest(batch.device_id, readings, batch.health)
        except Exception:  # a full spool or a bug must not stop the other devices' polls
            log.exception("%s: storing readings of %s failed", self.site.id, batch.device_id)

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        cadence = self.options.cadence
        now = datetime.now(UTC)
        jobs = [(self.dispatch, cadence.dispatch), (self.optimise, cadence.optimise), (self.renew, cadence.renew)]
        period_s = self.controller.arbiter.heartbeat_period_s
        if period_s is not None:
            # Its own job, outside the site's job lock: a long dispatch must not delay the heartbeats. Twice
            # per period, so a beat is never a whole period late.
            jobs.append((self.heartbeat, timedelta(seconds=period_s / 2)))
        self._scheduler = scheduler
        for job, every in jobs:
            seconds = max(every.total_seconds() / self.speed, 0.5)
            first = now + timedelta(seconds=2 if job == self.optimise else seconds)
            scheduler.add_job(_quiet_at_stop(job, lambda: self._stopping), "interval", seconds=seconds,
                              max_instances=1, coalesce=True, id=f"{self.site.id}:{job.__name__}",
                              misfire_grace_time=max(int(seconds), 1), next_run_time=first)

    async def warm_up(self, historian: Historian) -> int:
        """Feed the forecaster the stored history of the last days (a restart keeps its forecasts): quarter-hour
        means of measurements, the last value of states and counters."""
        end = self.clock.now()
        start = end - timedelta(days=self.forecaster.history_days)
        points = observed_points(self.site)
        last = sorted(last_value_points(self.site, points))
        means = [address for address in points if address not in last]
        try:
            frame = await historian.query(self.site.id, means, start, end, WARM_UP_BUCKET)
            if last:
                frame = frame.join(await historian.query(self.site.id, last, start, end, WARM_UP_BUCKET,
                                                         Aggregate.LAST), how="outer")
        except HistorianUnavailable as error:
            log.warning("%s: no stored history for the forecasts (%s); they start from scratch", self.site.id, error)
            return 0
        frame = frame.dropna(how="all")
        rows = ((ts.to_pydatetime() + WARM_UP_BUCKET / 2, _row_numbers(values))
                for ts, values in zip(frame.index, frame.to_dict("records"), strict=True))
        used = self.forecaster.warm_up(self.site, rows)
        log.info("%s: forecasts learnt from %d stored quarter-hours", self.site.id, used)
        return used

    def unschedule(self) -> None:
        if self._scheduler is None:
            return
        for job in self._scheduler.get_jobs():
            if job.id.startswith(f"{self.site.id}:"):
                job.remove()
        self._scheduler = None

    async def start(self, left_by: Iterable[Commanded] | None = None) -> None:
        # A site handed over and taken again starts anew.
        self._stopping = False
        # Before any write: what a run that stopped abruptly left commanded (or, taking the site over, what
        # the previous owner held) is reclaimed or relinquished.
        await self.controller.recover(left_by)
        await self.poller.start()
        self._replanner = asyncio.create_task(self._replan_on_request(), name=f"replan {self.site.id}")
        log.info("%s: running with %d devices", self.site.id, len(self.drivers))

    async def abandon(self) -> None:
        """Stop polling and commanding without relinquishing (another instance takes the site over, or the
        devices' own fallbacks act), after the job under way."""
        self.unschedule()
        await self._stop(relinquish=False)

    async def stop(self) -> None:
        await self._stop(relinquish=True)

    async def _stop(self, *, relinquish: bool) -> None:
        self._stopping = True
        # Wait for the job under way (a re-plan's dispatch among them: cancelled inside it, a write would be
        # cut between its intent and its outcome), but not forever: a job stuck on a device must not keep the
        # other leases from being relinquished. What is still running then is logged for the operator.
        acquired = False
        try:
            async with asyncio.timeout(STOP_WAIT_S):
                await self._busy.acquire()
                acquired = True
        except TimeoutError:
            log.warning("%s: a job still runs after %.0f s; stopping without it:\n%s", self.site.id, STOP_WAIT_S,
                        running_tasks())
        # A re-plan still solving ends here; one waiting for the lock or for an event ends there.
        await stop_task(self._replanner)
        self._replanner = None
        with contextlib.suppress(TimeoutError):
            # A heartbeat already writing finishes; none starts after this.
            async with asyncio.timeout(STOP_WAIT_S):
                async with self._beating:
                    pass
        try:
            await self.poller.stop()
            if not relinquish:
                await self.controller.abandon()
                return
            released = await self.controller.shutdown()
        finally:
            if acquired:
                self._busy.release()
        log.info("%s: relinquished %d points", self.site.id, len(released))

    async def optimise(self) -> None:
        # The solve runs outside the lock: lease renewals must not wait for it.
        await self._optimise()
        await self.dispatch()

    async def dispatch(self) -> None:
        async with self._busy:
            # A job that waited for the lock while the site stopped writes nothing after the relinquish.
            if not self._stopping:
                await self._dispatch()

    async def heartbeat(self) -> None:
        async with self._beating:
            if self._stopping:
                return
            for entry in await self.controller.heartbeat():
                self.metrics.writes.labels(self.site.id, entry.outcome.value).inc()

    async def renew(self) -> None:
        async with self._busy:
            if self._stopping:
                return
            for entry in await self.controller.renew():
                self.metrics.writes.labels(self.site.id, entry.outcome.value).inc()

    async def _optimise(self) -> None:
        failures = self.controller.stats.optimiser_failures
        started = asyncio.get_running_loop().time()
        await self.controller.optimise()
        if self.weather is not None:
            self.weather.report(self.controller.alarms, self.site.id, self.clock.now())
        self.metrics.solve_seconds.labels(self.site.id).observe(asyncio.get_running_loop().time() - started)
        if self.controller.stats.optimiser_failures > failures:
            self.metrics.optimiser_failures.labels(self.site.id).inc()
        self.metrics.observe_forecasts(self.site.id, self.forecaster.report(self.site), self.clock.now())

    async def _dispatch(self) -> None:
        self.forecaster.observe(self.site, self.controller.snapshot())
        for entry in await self.controller.dispatch():
            self.metrics.writes.labels(self.site.id, entry.outcome.value).inc()
        for alarm_kind in {a.kind for a in self.controller.alarms.active()}:
            count = sum(1 for a in self.controller.alarms.active() if a.kind == alarm_kind)
            self.metrics.active_alarms.labels(self.site.id, alarm_kind.value).set(count)

    async def _replan_on_request(self) -> None:
        gap = self.options.cadence.replan_gap.total_seconds() / self.speed
        while True:
            await self.controller.replan_requested.wait()
            await self.optimise()
            # Several events in a row (cars arriving together) make one re-plan, not one each.
            await asyncio.sleep(gap)


def _quiet_at_stop(job: Callable[[], Awaitable[None]], stopping: Callable[[], bool]) -> Callable[[], Awaitable[None]]:
    """The job as the scheduler runs it: cut short by the service's stop (a solve under way), it ends quietly
    instead of being logged as a failure."""

    @functools.wraps(job)
    async def run() -> None:
        try:
            await job()
        except asyncio.CancelledError:
            if not stopping():
                raise

    return run


def running_tasks() -> str:
    """Each task of the event loop and where it waits, one per line (for logs of a stop that takes long)."""
    lines = []
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=6)
        where = " < ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        lines.append(f"  {task.get_name()}: {where}")
    return "\n".join(lines)


def _row_numbers(values: dict[str, float]) -> Callable[[str], float | None]:
    def number(address: str) -> float | None:
        value = values.get(address)
        return None if value is None or math.isnan(value) else float(value)
    return number


class ServiceHost:
    """The sites of one gridctl process, their shared history database, and the scheduler."""

    def __init__(self, sites: Sequence[SiteOptions], db: str, spool_dir: Path, *, clock: Clock | None = None,
                 speed: float = 1.0, min_poll_s: float = 1.0, spool_capacity: int = 2_000_000,
                 audit: AuditSink | None = None, cadence: Cadence | None = None,
                 journal: Path | None = None, cluster: ClusterSettings | None = None) -> None:
        self.clock = clock or WallClock()
        self.speed = speed
        self.cadence = cadence or Cadence()
        self.metrics = ServiceMetrics()
        self.historian: Historian = open_historian(db)
        self.db = db
        spool_dir.mkdir(parents=True, exist_ok=True)
        loaded = [load_site(o.site) for o in sites]
        # An older spool's readings go to the site that has their point.
        addresses = {site.id: [a for a, _d, _p in site.all_points()] for site in loaded}
        self.spool = Spool(spool_dir / "readings.spool", capacity=spool_capacity, on_alarm=self._spool_alarm,
                           sites=addresses)
        self.recorder = Recorder(self.historian, self.spool, clock=self.clock.now, on_status=self._history_status)
        self.metrics.track_history(lambda: float(self.recorder.status.available),
                                   lambda path: float(getattr(self.recorder.stats, path)), self._history_figures)
        self.audit = audit
        # Every write is journalled here first; the shipper copies the journal to the database's audit.
        self.journal = WriteJournal(journal or paths.journal_path(spool_dir))
        self.shipper = JournalShipper(self.journal, db)
        self._min_poll_s = min_poll_s
        self._options = {site.id: o for o, site in zip(sites, loaded, strict=True)}
        self.sites = [self._new_service(o, site) for o, site in zip(sites, loaded, strict=True)]
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self._started = False
        # Sharing sites with other instances through leases in PostgreSQL (None: a single instance).
        self.cluster = None
        if cluster is not None:
            from gridctl.cluster.host import ClusterHost

            self.cluster = ClusterHost(self, cluster)

    def _new_service(self, options: SiteOptions, site: Site) -> SiteService:
        return SiteService(options, recorder=self.recorder, clock=self.clock, metrics=self.metrics, audit=self.audit,
                           speed=self.speed, min_poll_s=self._min_poll_s, site=site, journal=self.journal)

    def renew_service(self, site_id: str) -> SiteService:
        """A fresh, unstarted service for a site whose service stopped (another instance took it)."""
        index = next(i for i, s in enumerate(self.sites) if s.site.id == site_id)
        self.sites[index] = self._new_service(self._options[site_id], self.sites[index].site)
        return self.sites[index]

    def _spool_alarm(self, alarm: SpoolAlarm) -> None:
        now = self.clock.now()
        for service in getattr(self, "sites", []):
            book = service.controller.alarms
            if alarm.active:
                book.raise_alarm(AlarmKind.SPOOL_FILLING, service.site.id,
                                 f"history spool {alarm.fill_ratio:.0%} full ({alarm.count}/{alarm.capacity} readings)"
                                 f"; the database is not taking readings", now, Severity.CRITICAL)
            else:
                book.clear(AlarmKind.SPOOL_FILLING, service.site.id, now)

    def _history_figures(self) -> dict[str, float]:
        stats = self.recorder.stats
        return {"commits": stats.commits, "failures": stats.failures, "outages": stats.outages,
                "pending": self.recorder.pending, "spool_depth": len(self.spool)}

    def _history_status(self, status: HistoryStatus) -> None:
        now = self.clock.now()
        for service in getattr(self, "sites", []):
            book = service.controller.alarms
            if status.available:
                book.clear(AlarmKind.HISTORY_UNAVAILABLE, service.site.id, now)
            else:
                book.raise_alarm(AlarmKind.HISTORY_UNAVAILABLE, service.site.id,
                                 f"the history database is not taking readings ({status.error}); they wait in the "
                                 f"local spool ({len(self.spool)} readings)", now, Severity.CRITICAL)
        if status.available:
            log.warning("history database takes readings again; draining %d spooled readings", len(self.spool))
        else:
            log.error("history database unavailable (%s): readings go to the local spool", status.error)

    def _spooled(self, site_id: str) -> float:
        return float(self.spool.count(site_id))

    def site(self, site_id: str) -> SiteService:
        return next(s for s in self.sites if s.site.id == site_id)

    async def open_history(self) -> None:
        await self.historian.open()
        applied = await self.historian.upgrade([service.site for service in self.sites])
        if SITE_KEYED_VERSION in applied:
            for shared in await self.historian.shared_series():
                log.warning("%s: %s holds %d readings that sites %s wrote into while points were keyed by address "
                            "alone; they stay with %s", shared.site_id, shared.address, shared.readings,
                            ", ".join(shared.claimed_by), shared.site_id)
        for service in self.sites:
            await self.historian.sync_site(service.site)

    @property
    def instance_id(self) -> str:
        return self.journal.instance_id

    async def start(self) -> None:
        await self.recorder.start()
        if self.cluster is not None:
            # Sites start as this instance takes their leases; hands off comes from the database then.
            self.shipper.start()
            for service in self.sites:
                self.metrics.track_spool(service.site.id, functools.partial(self._spooled, service.site.id))
            self.cluster.start()
        else:
            # Hands off is known before the first write: from the journal, joined by the database's when it
            # answers.
            await self.shipper.restore_hands_off([service.controller.arbiter for service in self.sites])
            self.shipper.start()
        for service in self.sites if self.cluster is None else ():
            self.metrics.track_spool(service.site.id, functools.partial(self._spooled, service.site.id))
            await service.warm_up(self.historian)
            await service.start()
            service.schedule(self.scheduler)
        for job, every in ((self.rollups, self.cadence.rollups), (self.retention, self.cadence.retention)):
            seconds = max(every.total_seconds() / self.speed, 1.0)
            self.scheduler.add_job(_quiet_at_stop(job, lambda: not self._started), "interval", seconds=seconds,
                                   max_instances=1, coalesce=True, id=job.__name__,
                                   next_run_time=datetime.now(UTC) + timedelta(seconds=seconds))
        self.scheduler.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            # No new runs; runs under way finish (each site's stop waits for its own).
            self.scheduler.pause()
            self._started = False
        if self.cluster is not None:
            await self.cluster.stop()
        else:
            await asyncio.gather(*(service.stop() for service in self.sites))
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.journal.close_open()
        await self.shipper.stop(drain_timeout_s=10)
        self.journal.close()
        await self.recorder.drain(10)
        await self.recorder.close()
        stats = self.recorder.stats
        log.info("history: %d readings written, %d spooled, %d flushed from the spool, %d still spooled",
                 stats.written, stats.spooled, stats.flushed, len(self.spool),
                 extra={"readings_written": stats.written, "readings_spooled": stats.spooled,
                        "readings_flushed": stats.flushed, "readings_still_spooled": len(self.spool)})
        await self.historian.close()
        self.spool.close()

    async def rollups(self) -> None:
        if self.cluster is None or self.cluster.coordinator.is_maintainer():
            await self.historian.refresh_rollups()

    async def retention(self) -> None:
        if self.cluster is None or self.cluster.coordinator.is_maintainer():
            await self.historian.apply_retention(self.clock.now())
