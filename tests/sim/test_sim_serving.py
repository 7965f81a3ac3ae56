"""A whole simulated site served over the real protocols in-process, read and written by the production
drivers while its physics runs, with faults injected per device."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from drivers.base import Driver, Quality
from drivers.factory import make_driver
from gridctl.config import load_site
from sim.core import Fault, FaultKind, SimClock
from sim.site import SiteSimulation, free_port_offset

SITES = Path(__file__).resolve().parents[2] / "sites"
# One served site for the whole module: starting 11 servers costs seconds.
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def union() -> AsyncIterator[SiteSimulation]:
    site = load_site(SITES / "zac-union")
    # Tuesday 10:00 in Lille, one simulated minute per wall second.
    clock = SimClock(datetime(2026, 1, 13, 9, 0, tzinfo=UTC), speed=60.0)
    simulation = SiteSimulation(site, clock, seed=2, port_offset=free_port_offset(site), instruments=False)
    await simulation.start(step_interval_s=0.05)
    try:
        yield simulation
    finally:
        await simulation.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def drivers(union: SiteSimulation) -> AsyncIterator[dict[str, Driver]]:
    made = {device_id: make_driver(device.spec) for device_id, device in union.devices.items()}
    await asyncio.gather(*(driver.connect() for driver in made.values()))
    try:
        yield made
    finally:
        await asyncio.gather(*(driver.close() for driver in made.values()))


async def test_every_point_of_the_site_reads_good_over_its_protocol(union: SiteSimulation,
                                                                     drivers: dict[str, Driver]) -> None:
    assert {listener.protocol for listener in union.listeners} == {"modbus", "bacnet", "opcua"}
    results = await asyncio.gather(*(driver.read() for driver in drivers.values()))
    readings = [reading for batch in results for reading in batch]
    assert len(readings) == sum(len(device.points) for device in union.devices.values())
    bad = [r for r in readings if r.quality is not Quality.GOOD]
    assert not bad, bad[:3]


async def test_devices_react_to_writes_through_the_physics(union: SiteSimulation,
                                                          drivers: dict[str, Driver]) -> None:
    lighting = drivers["offices-lighting"]
    await lighting.write("zone-1-dimming", 30.0, priority=10)
    assert union.devices["offices-lighting"].active_priority("zone-1-dimming") == 10

    async def dimmed() -> bool:
        (power,) = await lighting.read(["zone-1-power"])
        return power.value == pytest.approx(0.3 * 6000.0)

    await eventually(dimmed)
    charger_id = next(c for c, component in union.physics.chargers.items() if component.model.state == 2)
    charger = drivers[charger_id]
    await charger.write("current-limit", 0.0)

    async def stopped() -> bool:
        power, state = await charger.read(["power", "plug-state"])
        return power.value == 0.0 and state.value in (1, 3)

    await eventually(stopped)
    assert union.physics.chargers[charger_id].model.power_kw == 0.0


async def test_faults_are_injected_per_device_and_healed(union: SiteSimulation, drivers: dict[str, Driver]) -> None:
    union.inject_fault("charger-03", Fault(FaultKind.OFFLINE))
    union.inject_fault("offices-ahu", Fault(FaultKind.EXCEPTION))
    (charger3,) = await drivers["charger-03"].read(["power"])
    (charger4,) = await drivers["charger-04"].read(["power"])
    (ahu,) = await drivers["offices-ahu"].read(["return-temperature"])
    assert charger3.quality is not Quality.GOOD and charger3.error
    assert charger4.quality is Quality.GOOD, "a neighbour behind the same gateway still answers"
    assert ahu.quality is not Quality.GOOD and ahu.error
    union.inject_fault("charger-03", None)
    union.inject_fault("offices-ahu", None)

    async def healed() -> bool:
        (charger,) = await drivers["charger-03"].read(["power"])
        (zone,) = await drivers["offices-ahu"].read(["return-temperature"])
        return charger.quality is Quality.GOOD and zone.quality is Quality.GOOD

    await eventually(healed)


async def test_an_offline_opcua_server_comes_back(union: SiteSimulation, drivers: dict[str, Driver]) -> None:
    bms = drivers["silo-bms"]
    (before,) = await bms.read(["outdoor-temperature"])
    assert before.quality is Quality.GOOD
    union.inject_fault("silo-bms", Fault(FaultKind.OFFLINE))

    async def unreachable() -> bool:
        (reading,) = await bms.read(["outdoor-temperature"])
        return reading.quality is not Quality.GOOD

    await eventually(unreachable)
    union.inject_fault("silo-bms", None)

    async def back() -> bool:
        (reading,) = await bms.read(["outdoor-temperature"])
        return reading.quality is Quality.GOOD

    await eventually(back, timeout_s=60.0)


async def test_physics_runs_on_the_simulated_clock(union: SiteSimulation) -> None:
    first = union.physics.time
    await asyncio.sleep(1.0)
    # One simulated minute per wall second: the physics has moved about a minute.
    moved_s = (union.physics.time - first).total_seconds()
    assert 20.0 < moved_s < 400.0
