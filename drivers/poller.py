"""Polls drivers of any protocol, each on its own period in its own task.

Each device runs on a fixed-rate schedule: ticks at start + phase + k × period, computed from the
start, never from the previous poll, so they do not drift. The phase is the device's own, a stable
hash of its id (and the poller's `phase_key`, e.g. the site) spread over the period: thousands of
devices on the same period are polled evenly across it rather than in one burst per tick, each at the
same offset from the start on every start. A device with a phase is also polled once at start, so the service
has every value at once. A poll that overruns its period skips the ticks it missed instead of bursting
to catch up, and never delays another device: every device has its own task, and drivers never block
each other (one connection per endpoint). Each finished poll is handed to the sink (a callback, sync
or async, or an asyncio.Queue) as a `PollBatch`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from drivers.base import DeviceHealth, Driver, Reading

log = logging.getLogger(__name__)


class PollClock(Protocol):
    """Where the poller gets its time from (seconds, monotonic) and how it waits."""

    def time(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class LoopClock:
    """The event loop's monotonic clock."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.time()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class PollBatch:
    device_id: str
    # Poll clock time the poll was due and when it finished.
    due: float
    finished: float
    readings: list[Reading]
    health: DeviceHealth
    # When the poll started (poll clock), and how many of the device's ticks were skipped just before it.
    started: float | None = None
    skipped_before: int = 0


Sink = Callable[[PollBatch], Awaitable[None] | None] | asyncio.Queue


@dataclass
class DeviceStats:
    polls: int = 0
    # Ticks skipped because the previous poll was still running.
    missed_ticks: int = 0
    errors: int = 0
    last_duration_s: float | None = None
    starts: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PolledDevice:
    driver: Driver
    period_s: float
    # Offset of the device's ticks within its period; None: hashed from its id.
    phase_s: float | None = None


def stable_phase(key: str, period_s: float) -> float:
    """A phase in [0, period) that depends only on `key`: the same on every start and every machine."""
    return zlib.crc32(key.encode()) / 2**32 * period_s


class Poller:
    """Runs one polling task per driver until stopped.

    A device's period is its `PolledDevice.period_s`, or its spec's `poll_interval_s` for a bare driver.
    The poller connects each driver once at start; reconnecting is the driver's job, and closing the
    drivers is the caller's.
    """

    def __init__(self, devices: Iterable[PolledDevice | Driver], sink: Sink, *, clock: PollClock | None = None,
                 keep_start_times: int = 1000, phase_key: str = "") -> None:
        self.devices = [d if isinstance(d, PolledDevice) else PolledDevice(d, _period_of(d)) for d in devices]
        ids = [d.driver.device_id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"device ids polled twice: {sorted({i for i in ids if ids.count(i) > 1})}")
        for device in self.devices:
            if not device.period_s > 0:
                raise ValueError(f"{device.driver.device_id}: poll period must be positive")
            if device.phase_s is not None and not 0 <= device.phase_s < device.period_s:
                raise ValueError(f"{device.driver.device_id}: phase must be within [0, period)")
        self.phases = {
            d.driver.device_id: d.phase_s if d.phase_s is not None
            else stable_phase(f"{phase_key}/{d.driver.device_id}", d.period_s)
            for d in self.devices
        }
        self.sink = sink
        self.clock = clock or LoopClock()
        self.stats = {device_id: DeviceStats() for device_id in ids}
        self._keep = keep_start_times
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> Poller:
        if self._tasks:
            raise RuntimeError("poller already running")
        self._stopping = False
        loop = asyncio.get_running_loop()
        start = self.clock.time()
        self._tasks = [loop.create_task(self._run(device, start), name=f"poll {device.driver.device_id}")
                       for device in self.devices]
        return self

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel every poll and wait for them, at most `timeout_s`: a poll stuck in a protocol stack
        that ignores cancellation is left behind (and logged, with where it is stuck)."""
        tasks, self._tasks = self._tasks, []
        self._stopping = True
        if not tasks:
            return
        # Python 3.11's wait_for (inside pymodbus, among others) drops a cancellation that arrives as
        # its answer does: the poll then goes on. So each poll also ends at its next turn, and what
        # still runs is cancelled again every second.
        deadline = asyncio.get_running_loop().time() + timeout_s
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=min(left, 1.0))
        done = [task for task in tasks if task.done()]
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("poll task %s ended with %r", task.get_name(), task.exception())
        for task in pending:
            where = " < ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(task.get_stack(limit=8)))
            log.warning("poll task %s did not stop within %.0f s, left behind at %s", task.get_name(), timeout_s,
                        where)

    async def __aenter__(self) -> Poller:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.stop()

    async def _run(self, device: PolledDevice, start: float) -> None:
        driver = device.driver
        stats = self.stats[driver.device_id]
        try:
            await driver.connect()
        except Exception as exc:  # the driver reconnects by itself; polls report the outage
            log.warning("%s: not connected at start: %s", driver.device_id, exc)
        period = device.period_s
        origin = start + self.phases[driver.device_id]
        # A phased device is read once at start too; its ticks follow from `origin`.
        tick = -1 if origin > start else 0
        skipped = 0
        while not self._stopping:
            due = start if tick < 0 else origin + tick * period
            await self.clock.sleep_until(due)
            began = self.clock.time()
            stats.polls += 1
            stats.starts.append(began)
            if len(stats.starts) > self._keep:
                del stats.starts[: len(stats.starts) - self._keep]
            try:
                readings = await driver.read()
            except Exception:
                # read() reports device faults in its readings; anything else is a bug to log, not to die of.
                stats.errors += 1
                log.exception("%s: read failed", driver.device_id)
                readings = []
            finished = self.clock.time()
            stats.last_duration_s = finished - began
            await self._deliver(PollBatch(driver.device_id, due, finished, readings, driver.health(), began, skipped))
            # The first tick not yet past: one due this very instant is still polled.
            next_tick = max(tick + 1, math.ceil((self.clock.time() - origin) / period))
            skipped = next_tick - tick - 1
            stats.missed_ticks += skipped
            tick = next_tick

    async def _deliver(self, batch: PollBatch) -> None:
        try:
            if isinstance(self.sink, asyncio.Queue):
                await self.sink.put(batch)
                return
            result = self.sink(batch)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s: the readings sink failed", batch.device_id)


def _period_of(driver: Driver) -> float:
    spec = getattr(driver, "spec", None)
    period = getattr(spec, "poll_interval_s", None)
    if period is None:
        raise ValueError(f"{driver.device_id}: give its period with PolledDevice(driver, period_s)")
    return float(period)
