"""The OPC-UA driver when servers are down, die, answer slowly or not at all, or report bad status."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest
from test_opcua import INITIAL, bms_spec, eventually, eventually_read, fast_backoff

from drivers.base import ConnectionLost, DeviceException, HealthState, Quality
from drivers.opcua import OpcuaDriver
from sim.core import Fault, FaultKind, SimDevice, WallClock
from sim.opcua_server import OpcuaSimServer


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def all_good(readings: list) -> bool:
    return all(r.quality is Quality.GOOD for r in readings)


async def test_server_offline_at_start_then_recovers() -> None:
    port = free_port()
    spec = replace(bms_spec(f"opc.tcp://127.0.0.1:{port}/gridctl/sim"), timeout_s=0.5)
    driver = OpcuaDriver(spec, backoff=fast_backoff())
    try:
        with pytest.raises(ConnectionLost):
            await driver.connect()
        readings = await driver.read()
        assert readings and all(r.quality is Quality.BAD and r.value is None for r in readings)
        assert all("not connected" in (r.error or "") for r in readings)
        await eventually(lambda: driver.health().consecutive_failures >= 3)
        assert driver.health().state is HealthState.OFFLINE

        device = SimDevice(bms_spec(), WallClock(), INITIAL)
        async with OpcuaSimServer([device], port=port):
            readings = await eventually_read(driver, all_good)
            assert readings[0].value == INITIAL["supply_temperature_c"]
            assert driver.health().state is HealthState.OK
            assert driver.connections == 1
    finally:
        await driver.close()


async def test_server_dies_mid_poll_and_comes_back() -> None:
    device = SimDevice(bms_spec(), WallClock(), INITIAL)
    async with OpcuaSimServer([device]) as server:
        driver = OpcuaDriver(replace(bms_spec(server.endpoint), timeout_s=2.0), backoff=fast_backoff())
        await driver.connect()
        try:
            good = await driver.read()
            assert all_good(good)
            # The server goes away while a poll is in flight (held by the server until then).
            device.fault = Fault(FaultKind.SILENT)
            poll = asyncio.create_task(driver.read())
            await eventually(lambda: server.held_requests == 1)
            device.fault = Fault(FaultKind.OFFLINE)
            await server.sync()
            assert not server.listening
            readings = await poll
            # Never an exception: the last good values, stale, with the time they were read.
            assert all(r.quality is Quality.STALE for r in readings), readings
            assert [r.value for r in readings] == [r.value for r in good]
            assert all(r.ts == good[0].ts for r in readings)
            assert driver.health().state is not HealthState.OK
            stale = await driver.read()
            assert all(r.quality is Quality.STALE for r in stale)

            device.fault = None
            device.set("supply_temperature_c", 23.0)
            await server.sync()
            readings = await eventually_read(driver, all_good)
            assert readings[0].value == 23.0
            assert driver.connections == 2
            assert driver.health().state is HealthState.OK
        finally:
            await driver.close()


async def test_bad_status_codes_are_bad_readings_and_typed_write_errors() -> None:
    device = SimDevice(bms_spec(), WallClock(), INITIAL)
    async with OpcuaSimServer([device]) as server:
        driver = OpcuaDriver(bms_spec(server.endpoint), backoff=fast_backoff())
        await driver.connect()
        try:
            device.fault = Fault(FaultKind.EXCEPTION)
            await server.sync()
            readings = await driver.read()
            assert all(r.quality is Quality.BAD and r.value is None for r in readings)
            assert {r.error for r in readings} == {"BadDeviceFailure"}
            assert driver.health().state is HealthState.DEGRADED
            with pytest.raises(DeviceException, match="BadDeviceFailure"):
                await driver.write("setpoint_c", 20.0)
            assert not device.writes
            device.fault = None
            await server.sync()
            assert all_good(await driver.read())
            assert driver.health().state is HealthState.OK
            assert driver.connections == 1  # a bad status is not a broken connection
        finally:
            await driver.close()


@pytest.mark.parametrize("kind", [FaultKind.SLOW, FaultKind.SILENT])
async def test_slow_or_silent_server_does_not_delay_the_others(kind: FaultKind) -> None:
    stuck_spec = replace(bms_spec(device_id="stuck"), timeout_s=0.5, retries=1)
    healthy_spec = replace(bms_spec(device_id="healthy"), timeout_s=0.5)
    stuck = SimDevice(stuck_spec, WallClock(), INITIAL)
    healthy = SimDevice(healthy_spec, WallClock(), INITIAL)
    async with OpcuaSimServer([stuck, healthy]) as server:
        stuck_driver = OpcuaDriver(replace(stuck_spec, endpoint=server.endpoint), backoff=fast_backoff())
        healthy_driver = OpcuaDriver(replace(healthy_spec, endpoint=server.endpoint), backoff=fast_backoff())
        await asyncio.gather(stuck_driver.connect(), healthy_driver.connect())
        try:
            assert all_good(await stuck_driver.read())
            stuck.fault = Fault(kind, delay_s=5.0)
            stuck_poll = asyncio.create_task(stuck_driver.read())
            healthy_polls = 0
            while not stuck_poll.done():
                readings = await healthy_driver.read()
                assert all_good(readings)
                healthy_polls += 1
                await asyncio.sleep(0.01)
            stuck_readings = stuck_poll.result()
            # The stuck device timed out (twice: one retry) while the other kept polling.
            assert all(r.quality is Quality.STALE for r in stuck_readings)
            assert "DeviceTimeout" in (stuck_driver.health().last_error or "")
            assert healthy_polls >= 5
            assert healthy_driver.health().state is HealthState.OK
        finally:
            stuck.fault = None
            await asyncio.gather(stuck_driver.close(), healthy_driver.close())


async def test_subscription_resumes_after_server_restart() -> None:
    device = SimDevice(bms_spec(), WallClock(), INITIAL)
    server = OpcuaSimServer([device])
    await server.start()
    spec = replace(bms_spec(server.endpoint, subscription=True), timeout_s=0.5)
    driver = OpcuaDriver(spec, backoff=fast_backoff())
    try:
        await driver.connect()
        await eventually_read(driver, all_good)
        await server.stop()
        stale = await eventually_read(driver, lambda rs: all(r.quality is Quality.STALE for r in rs))
        assert stale[0].value == INITIAL["supply_temperature_c"]
        device.set("supply_temperature_c", 27.5)
        await server.start()  # same port, fresh address space and sessions
        readings = await eventually_read(driver, lambda rs: all_good(rs) and rs[0].value == 27.5)
        assert readings[0].value == 27.5
        assert driver.connections == 2
        device.set("supply_temperature_c", 28.5)
        await eventually_read(driver, lambda rs: rs[0].value == 28.5)
    finally:
        await driver.close()
        await server.stop()


async def test_close_is_idempotent_and_stops_reconnecting() -> None:
    port = free_port()
    driver = OpcuaDriver(replace(bms_spec(f"opc.tcp://127.0.0.1:{port}"), timeout_s=0.3), backoff=fast_backoff())
    with pytest.raises(ConnectionLost):
        await driver.connect()
    await driver.close()
    failures = driver.health().consecutive_failures
    await asyncio.sleep(0.5)
    assert driver.health().consecutive_failures == failures
    await driver.close()
