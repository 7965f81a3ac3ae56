"""`gridctl run`: one site's control loop on the wall clock, driven by APScheduler.

Jobs: each device polls on its own period (the poller's tasks), dispatch every step, lease renewal,
forecast + optimise every 15 minutes and at once on a policy change or a demand-response event,
rollups and retention. Stopping relinquishes every lease, staggered, before the drivers close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from drivers.factory import make_driver, offset_ports
from drivers.poller import PollBatch, PolledDevice, Poller
from gridctl.clock import Clock, WallClock
from gridctl.config import Site, load_site
from gridctl.config.loader import site_file
from gridctl.fieldbus import device_spec
from gridctl.history import Historian, open_historian
from gridctl.history.recorder import Recorder
from gridctl.history.spool import Spool
from gridctl.service.controller import ControllerSettings, SiteController
from gridctl.service.forecasting import DARK_BELOW_ELEVATION_DEG, SignalForecaster, solar
from gridctl.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cadence:
    dispatch: timedelta = timedelta(minutes=1)
    optimise: timedelta = timedelta(minutes=15)
    renew: timedelta = timedelta(seconds=5)
    rollups: timedelta = timedelta(minutes=15)
    retention: timedelta = timedelta(hours=24)


@dataclass
class ServiceOptions:
    site: Path
    db: str
    spool_dir: Path
    port_offset: int = 0
    cadence: Cadence = field(default_factory=Cadence)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    spool_capacity: int = 2_000_000
    replan_gap_s: float = 30.0


class SiteService:
    """Everything `gridctl run` runs for one site, started and stopped as one."""

    def __init__(self, options: ServiceOptions, clock: Clock | None = None,
                 metrics: ServiceMetrics | None = None) -> None:
        self.options = options
        self.clock = clock or WallClock()
        self.site: Site = load_site(options.site)
        self.metrics = metrics or ServiceMetrics()
        site_dir = site_file(options.site).parent
        specs = [offset_ports(device_spec(d, site_dir), options.port_offset) for d in self.site.devices]
        self.drivers = {spec.id: make_driver(spec) for spec in specs}
        self.historian: Historian = open_historian(options.db)
        options.spool_dir.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(options.spool_dir / f"{self.site.id}.spool", capacity=options.spool_capacity)
        self.recorder = Recorder(self.historian, self.spool)
        self.forecaster = SignalForecaster()
        self.controller = SiteController(
            self.site, self.drivers, self.clock, self.forecaster, history=self.recorder,
            settings=options.controller, is_dark=self._is_dark)
        self.poller = Poller([PolledDevice(d, s.poll_interval_s) for d, s in zip(self.drivers.values(), specs,
                                                                                   strict=True)],
                             self._on_poll)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self._replanner: asyncio.Task[None] | None = None
        self._started = False

    def _is_dark(self, moment) -> bool:
        _, (elevation,) = solar(self.site, [moment])
        return elevation < DARK_BELOW_ELEVATION_DEG

    async def _on_poll(self, batch: PollBatch) -> None:
        self.metrics.observe_poll(self.site.id, batch.device_id, max(batch.finished - batch.due, 0.0),
                                  batch.health.state)
        try:
            await self.controller.ingest(batch.device_id, batch.readings, batch.health)
        except Exception:  # a full spool or a bug must not stop the other devices' polls
            log.exception("%s: storing readings of %s failed", self.site.id, batch.device_id)

    async def start(self) -> None:
        await self.historian.open()
        await self.historian.upgrade()
        await self.historian.sync_site(self.site)
        await self.recorder.start()
        self.metrics.track_spool(self.site.id, lambda: float(len(self.spool)))
        await self.poller.start()
        cadence = self.options.cadence
        jobs = [
            (self.dispatch, cadence.dispatch),
            (self.optimise, cadence.optimise),
            (self.renew, cadence.renew),
            (self.rollups, cadence.rollups),
            (self.retention, cadence.retention),
        ]
        first_run = {"optimise": datetime.now(UTC) + timedelta(seconds=2)}
        for job, every in jobs:
            self.scheduler.add_job(job, "interval", seconds=every.total_seconds(), max_instances=1, coalesce=True,
                                   id=job.__name__, misfire_grace_time=int(every.total_seconds()),
                                   next_run_time=first_run.get(job.__name__, datetime.now(UTC) + every))
        self.scheduler.start()
        self._replanner = asyncio.create_task(self._replan_on_request(), name=f"replan {self.site.id}")
        self._started = True
        log.info("%s: running with %d devices", self.site.id, len(self.drivers))

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.scheduler.shutdown(wait=False)
        if self._replanner is not None:
            self._replanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replanner
        await self.poller.stop()
        released = await self.controller.shutdown()
        log.info("%s: relinquished %d points", self.site.id, len(released))
        await self.recorder.close()
        await self.historian.close()
        self.spool.close()

    async def optimise(self) -> None:
        failures = self.controller.stats.optimiser_failures
        started = asyncio.get_running_loop().time()
        await self.controller.optimise()
        self.metrics.solve_seconds.labels(self.site.id).observe(asyncio.get_running_loop().time() - started)
        if self.controller.stats.optimiser_failures > failures:
            self.metrics.optimiser_failures.labels(self.site.id).inc()
        await self.dispatch()

    async def dispatch(self) -> None:
        self.forecaster.observe(self.site, self.controller.snapshot())
        for entry in await self.controller.dispatch():
            self.metrics.writes.labels(self.site.id, entry.outcome.value).inc()

    async def renew(self) -> None:
        for entry in await self.controller.renew():
            self.metrics.writes.labels(self.site.id, entry.outcome.value).inc()

    async def rollups(self) -> None:
        await self.historian.refresh_rollups()

    async def retention(self) -> None:
        await self.historian.apply_retention(self.clock.now())

    async def _replan_on_request(self) -> None:
        while True:
            await self.controller.replan_requested.wait()
            await self.optimise()
            # Several events in a row (cars arriving together) make one re-plan, not one each.
            await asyncio.sleep(self.options.replan_gap_s)
