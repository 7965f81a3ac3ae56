"""The poller: independent fixed-rate schedules, with a manual clock and with real Modbus devices."""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from modbus_fixtures import METER_POINTS, METER_VALUES, at_port, device_spec, fast_pool, sim_device

from drivers.base import DeviceHealth, Driver, HealthState, Quality, Reading, Value, WriteResult
from drivers.modbus import ModbusDriver
from drivers.poller import PollBatch, PolledDevice, Poller
from sim.core import Fault, FaultKind
from sim.modbus_server import SimModbusServer


class ManualClock:
    """Poll time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._changed = asyncio.Condition()

    def time(self) -> float:
        return self.now

    async def sleep_until(self, deadline: float) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.now >= deadline)

    async def advance_to(self, when: float) -> None:
        self.now = when
        async with self._changed:
            self._changed.notify_all()
        for _ in range(50):
            await asyncio.sleep(0)


class ClockedDriver(Driver):
    """A protocol-free device whose reads take `read_takes_s` of poll-clock time."""

    def __init__(self, device_id: str, clock: ManualClock, read_takes_s: float = 0.0) -> None:
        self.device_id = device_id
        self.clock = clock
        self.read_takes_s = read_takes_s
        self.connected = False

    async def connect(self) -> None:
        self.connected = True

    async def read(self, point_ids: Sequence[str] | None = None) -> list[Reading]:
        started = self.clock.time()
        if self.read_takes_s:
            await self.clock.sleep_until(started + self.read_takes_s)
        return [Reading(f"{self.device_id}/started", datetime.now(UTC), started, Quality.GOOD)]

    async def write(self, point_id: str, value: Value | None, *, priority: int | None = None) -> WriteResult:
        raise NotImplementedError

    async def close(self) -> None:
        self.connected = False

    def health(self) -> DeviceHealth:
        return DeviceHealth(self.device_id, HealthState.OK, None, None, None, 0)


async def test_each_device_keeps_its_own_schedule_and_overruns_skip_ticks():
    clock = ManualClock()
    fast = ClockedDriver("fast", clock)
    half = ClockedDriver("half", clock)
    slow = ClockedDriver("slow", clock, read_takes_s=2.5)
    batches: list[PollBatch] = []
    poller = Poller([PolledDevice(fast, 1.0, 0.0), PolledDevice(half, 0.5, 0.0), PolledDevice(slow, 1.0, 0.0)],
                    batches.append, clock=clock)
    async with poller:
        for step in range(21):
            await clock.advance_to(step * 0.5)
    assert fast.connected and slow.connected
    assert poller.stats["fast"].starts == [float(t) for t in range(11)]
    assert poller.stats["half"].starts == [t * 0.5 for t in range(21)]
    # 0 -> done at 2.5, ticks 1 and 2 skipped -> 3 -> 6 -> 9
    assert poller.stats["slow"].starts == [0.0, 3.0, 6.0, 9.0]
    assert poller.stats["slow"].missed_ticks == 6
    slow_batches = [b for b in batches if b.device_id == "slow"]
    assert [(b.due, b.finished) for b in slow_batches] == [(0.0, 2.5), (3.0, 5.5), (6.0, 8.5)]
    assert [b.readings[0].value for b in slow_batches] == [0.0, 3.0, 6.0]


async def test_batches_go_to_a_queue_and_a_failing_sink_does_not_stop_polling():
    clock = ManualClock()
    queue: asyncio.Queue[PollBatch] = asyncio.Queue()
    async with Poller([PolledDevice(ClockedDriver("a", clock), 1.0, 0.0)], queue, clock=clock):
        for when in (0.0, 1.0, 2.0):
            await clock.advance_to(when)
    assert [queue.get_nowait().due for _ in range(queue.qsize())] == [0.0, 1.0, 2.0]

    calls = []

    async def broken(batch: PollBatch) -> None:
        calls.append(batch.due)
        raise RuntimeError("storage down")

    async with Poller([PolledDevice(ClockedDriver("b", clock), 1.0, 0.0)], broken, clock=clock) as poller:
        start = clock.now
        for step in range(3):
            await clock.advance_to(start + step)
    assert len(calls) == 3 and poller.stats["b"].polls == 3


class SwallowingDriver(ClockedDriver):
    """A read that, like a protocol stack on Python 3.11's wait_for, answers instead of being cancelled."""

    async def read(self, point_ids: Sequence[str] | None = None) -> list[Reading]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
        return await super().read(point_ids)


async def test_a_poll_whose_read_swallows_its_cancellation_still_stops():
    clock = ManualClock()
    batches: list[PollBatch] = []
    poller = Poller([PolledDevice(SwallowingDriver("stubborn", clock), 1.0, 0.0)], batches.append, clock=clock)
    await poller.start()
    await clock.advance_to(0.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await poller.stop(timeout_s=30.0)
    # It ends at its next turn, well before the stop's bound; the answer it got is delivered.
    assert loop.time() - began < 5.0
    assert [b.device_id for b in batches] == ["stubborn"]


def test_configuration_errors():
    clock = ManualClock()
    with pytest.raises(ValueError):
        Poller([PolledDevice(ClockedDriver("a", clock), 1.0), PolledDevice(ClockedDriver("a", clock), 2.0)], [].append)
    with pytest.raises(ValueError):
        Poller([PolledDevice(ClockedDriver("a", clock), 0.0)], [].append)
    with pytest.raises(ValueError):
        Poller([ClockedDriver("a", clock)], [].append)  # no spec: the period must be given
    with pytest.raises(ValueError):
        Poller([PolledDevice(ClockedDriver("a", clock), 1.0, 1.0)], [].append)  # a phase outside the period


def test_phases_spread_devices_over_the_period_and_stay_put():
    """10,000 devices on one 5 s period: every half second of it polls about a tenth of them, and a
    device's phase depends on its id alone."""
    clock = ManualClock()
    period_s = 5.0
    drivers = [ClockedDriver(f"meter-{i:05d}", clock) for i in range(10_000)]
    poller = Poller([PolledDevice(d, period_s) for d in drivers], [].append, clock=clock, phase_key="site-a")
    phases = list(poller.phases.values())
    assert all(0 <= p < period_s for p in phases)
    per_slot = [0] * 10
    for phase in phases:
        per_slot[int(phase / period_s * 10)] += 1
    assert min(per_slot) > 800 and max(per_slot) < 1200, per_slot
    again = Poller([PolledDevice(d, period_s) for d in drivers], [].append, clock=clock, phase_key="site-a")
    assert again.phases == poller.phases
    other_site = Poller([PolledDevice(d, period_s) for d in drivers], [].append, clock=clock, phase_key="site-b")
    assert sum(other_site.phases[k] == v for k, v in poller.phases.items()) < 10


async def test_phased_ticks_do_not_drift_and_overruns_skip_whole_ticks():
    """Polled once at start, then exactly at start + phase + k × period for hundreds of periods, whatever
    the reads take; a read longer than the period skips ticks and comes back on the same grid."""
    clock = ManualClock()
    clock.now = 100.0
    steady = ClockedDriver("steady", clock, read_takes_s=0.3)
    slow = ClockedDriver("slow", clock, read_takes_s=2.2)
    poller = Poller([PolledDevice(steady, 1.0, 0.5), PolledDevice(slow, 1.0, 0.75)], [].append, clock=clock)
    async with poller:
        for step in range(4 * 400 + 1):
            await clock.advance_to(100.0 + step * 0.25)
    steady_starts = poller.stats["steady"].starts
    assert steady_starts[0] == 100.0
    assert steady_starts[1:] == [100.5 + k for k in range(400)]
    assert poller.stats["steady"].missed_ticks == 0
    slow_starts = poller.stats["slow"].starts
    # Started at 100 (done 102.2), then ticks 100.75 + 2, + 5, + 8 ...: every third tick, on the grid.
    assert slow_starts[:4] == [100.0, 102.75, 105.75, 108.75]
    assert all((s - 100.75) % 3.0 == 2.0 for s in slow_starts[1:])
    assert poller.stats["slow"].missed_ticks in (2 * (len(slow_starts) - 1), 2 * len(slow_starts))


@pytest.mark.slow
async def test_slow_and_dead_modbus_devices_do_not_delay_healthy_ones():
    """Two healthy meters keep their period next to a slow one, a silent one and one that refuses connections."""
    period_s = 0.1
    run_s = 2.5

    def meter(device_id: str):
        spec = device_spec(device_id, METER_POINTS, timeout_s=0.8, retries=1, poll_interval_s=period_s)
        return sim_device(spec, METER_VALUES)

    healthy, other, slow, silent = meter("healthy"), meter("other"), meter("slow"), meter("silent")
    slow.fault = Fault(FaultKind.SLOW, delay_s=0.6)
    silent.fault = Fault(FaultKind.SILENT)
    servers = [SimModbusServer([device]) for device in (healthy, other, slow, silent)]
    for server in servers:
        await server.start()
    pool = fast_pool()
    drivers = [ModbusDriver(at_port(device.spec, server.port), pool=pool)
               for device, server in zip((healthy, other, slow, silent), servers, strict=True)]
    # Nothing listens on this one: connection refused, reconnecting in the background.
    drivers.append(ModbusDriver(at_port(meter("gone").spec, _free_port()), pool=pool))
    batches: list[PollBatch] = []
    try:
        async with Poller(drivers, batches.append) as poller:
            await asyncio.sleep(run_s)
        stats = poller.stats
    finally:
        for driver in drivers:
            await driver.close()
        for server in servers:
            await server.stop()

    expected = run_s / period_s
    for device_id in ("healthy", "other"):
        starts = stats[device_id].starts
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert stats[device_id].polls >= 0.7 * expected, (device_id, stats[device_id].polls)
        assert statistics.median(gaps) == pytest.approx(period_s, abs=0.03), (device_id, gaps)
        # Far below the slow device's delay and the silent one's timeout.
        assert max(gaps) < 0.5, (device_id, gaps)
        good = [r for b in batches if b.device_id == device_id for r in b.readings]
        assert good and all(r.quality is Quality.GOOD for r in good)
    assert stats["slow"].polls <= run_s / 0.6 + 1
    assert stats["silent"].polls <= run_s / 1.6 + 1
    assert stats["slow"].missed_ticks > 0 and stats["silent"].missed_ticks > 0
    last = {b.device_id: b for b in batches}
    assert last["slow"].health.state is HealthState.OK
    assert all(r.quality is Quality.GOOD for r in last["slow"].readings)
    assert last["silent"].health.state in (HealthState.DEGRADED, HealthState.OFFLINE)
    assert last["gone"].health.state is HealthState.OFFLINE
    assert all(r.quality is Quality.BAD for r in last["gone"].readings)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
