"""The Modbus driver facing faulty simulated devices: offline, dying, exceptions, garbage, slow, silent."""

from __future__ import annotations

import asyncio
import struct

import pytest
from modbus_fixtures import (
    CHARGER_POINTS,
    CHARGER_VALUES,
    METER_POINTS,
    METER_VALUES,
    at_port,
    device_spec,
    eventually,
    fast_pool,
    sim_device,
)

from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceException,
    DeviceTimeout,
    DriverError,
    HealthState,
    NotAttempted,
    Quality,
    Reading,
)
from drivers.modbus import ModbusDriver
from drivers.specs import ModbusPointSpec
from sim.core import Fault, FaultKind
from sim.modbus_server import SimModbusServer


def meter(device_id: str = "meter", unit_id: int = 1, **kwargs):
    return sim_device(device_spec(device_id, METER_POINTS, unit_id=unit_id, **kwargs), METER_VALUES)


def qualities(readings) -> set[Quality]:
    return {r.quality for r in readings}


def failed_first_block(driver: ModbusDriver, readings: list[Reading], error_type: type[DriverError]) -> None:
    """The read's first request failed with `error_type`; the others were never sent, and say so."""
    first = {codec.point.id for codec in driver.plan()[0].codecs}
    assert len(first) < len(readings)
    for reading in readings:
        point_id = reading.address.split("/")[1]
        error = driver.last_errors[point_id]
        if point_id in first:
            assert isinstance(error, error_type), (point_id, error)
            assert (reading.error or "").startswith(f"{type(error).__name__}: "), reading
        else:
            assert isinstance(error, NotAttempted) and isinstance(error.cause, error_type), (point_id, error)
            assert (reading.error or "").startswith(f"NotAttempted: not attempted after {type(error.cause).__name__}: "
                                                    f"{error.cause}"), reading


async def test_offline_at_start_then_comes_up():
    device = meter(timeout_s=0.3)
    device.fault = Fault(FaultKind.OFFLINE)
    async with SimModbusServer([device]) as server:
        assert not server.listening
        driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
        try:
            with pytest.raises(ConnectionLost):
                await driver.connect()
            for _ in range(3):
                readings = await driver.read()
                assert qualities(readings) == {Quality.BAD}
                failed_first_block(driver, readings, ConnectionLost)
            health = driver.health()
            assert health.state is HealthState.OFFLINE and health.last_success is None
            assert "ConnectionLost" in (health.last_error or "")

            device.fault = None

            async def recovered() -> bool:
                return qualities(await driver.read()) == {Quality.GOOD}

            await eventually(recovered)
            assert driver.health().state is HealthState.OK
        finally:
            await driver.close()


async def test_dying_mid_poll_and_coming_back():
    device = meter(timeout_s=5.0, poll_interval_s=10.0)
    async with SimModbusServer([device]) as server:
        driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
        try:
            assert qualities(await driver.read()) == {Quality.GOOD}
            # The device takes its time on the next request and drops off the network while answering.
            device.fault = Fault(FaultKind.SLOW, delay_s=0.5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            poll = asyncio.create_task(driver.read())
            await asyncio.sleep(0.2)
            device.fault = Fault(FaultKind.OFFLINE)
            readings = await poll
            # The closed socket fails the request at once instead of waiting out the 5 s timeout.
            assert loop.time() - started < 2.0
            # Values just read are still worth showing, flagged stale, with the reason.
            assert qualities(readings) == {Quality.STALE}
            assert {r.address: r.value for r in readings}["meter/power_kw"] == pytest.approx(-8.432)
            assert all("ConnectionLost" in (r.error or "") for r in readings)
            assert driver.health().state is HealthState.DEGRADED
            await driver.read()
            await driver.read()
            assert driver.health().state is HealthState.OFFLINE

            device.fault = None
            device.set("power_kw", 2.0)

            async def recovered() -> bool:
                readings = await driver.read()
                return qualities(readings) == {Quality.GOOD} and {
                    r.address: r.value for r in readings}["meter/power_kw"] == 2.0

            await eventually(recovered)
            assert driver.health().state is HealthState.OK
            assert driver.endpoint.connects >= 2
        finally:
            await driver.close()


async def test_server_restarted_on_the_same_port():
    device = meter(timeout_s=0.5)
    server = await SimModbusServer([device]).start()
    driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
    try:
        assert qualities(await driver.read()) == {Quality.GOOD}
        await server.stop()
        assert Quality.GOOD not in qualities(await driver.read())
        server = await SimModbusServer([device], port=server.port).start()

        async def recovered() -> bool:
            return qualities(await driver.read()) == {Quality.GOOD}

        await eventually(recovered)
    finally:
        await driver.close()
        await server.stop()


async def test_exception_responses_are_typed_and_bad():
    device = meter()
    async with SimModbusServer([device]) as server:
        driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
        try:
            await driver.read()
            device.fault = Fault(FaultKind.EXCEPTION)
            readings = await driver.read()
            # A device that answers with an exception is not stale: it said the value is not available.
            assert qualities(readings) == {Quality.BAD}
            assert all(isinstance(error, DeviceException) for error in driver.last_errors.values())
            assert all(getattr(e, "exception_code", None) == 4 for e in driver.last_errors.values())
            assert driver.health().state is HealthState.DEGRADED
            await driver.read()
            await driver.read()
            assert driver.health().state is HealthState.OFFLINE
            with pytest.raises(DeviceException):
                await driver.write("ct_ratio", 100)
            device.fault = None
            assert qualities(await driver.read()) == {Quality.GOOD}
            assert driver.health().state is HealthState.OK
        finally:
            await driver.close()


async def test_garbage_responses_are_decode_errors():
    device = meter()
    async with SimModbusServer([device]) as server:
        driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
        try:
            device.fault = Fault(FaultKind.GARBAGE)
            readings = await driver.read()
            assert qualities(readings) == {Quality.BAD}
            assert all(r.value is None and "DecodeError" in (r.error or "") for r in readings)
            assert all(isinstance(error, DecodeError) for error in driver.last_errors.values())
            assert driver.health().state is HealthState.DEGRADED
            device.fault = None
            assert qualities(await driver.read()) == {Quality.GOOD}
        finally:
            await driver.close()


async def test_slow_device_within_and_beyond_its_timeout():
    device = meter(timeout_s=0.4, retries=1)
    async with SimModbusServer([device]) as server:
        driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
        try:
            device.fault = Fault(FaultKind.SLOW, delay_s=0.1)
            assert qualities(await driver.read()) == {Quality.GOOD}
            device.fault = Fault(FaultKind.SLOW, delay_s=1.0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            readings = await driver.read()
            # One block timed out twice (timeout × attempts); the other blocks were not tried.
            assert loop.time() - started < 0.4 * 2 + 0.5
            assert qualities(readings) == {Quality.STALE}
            failed_first_block(driver, readings, DeviceTimeout)
            device.fault = None
            # The late answers of the timed-out requests must not be taken for the next ones.
            await asyncio.sleep(1.0)
            readings = await driver.read()
            assert qualities(readings) == {Quality.GOOD}
            assert {r.address: r.value for r in readings}["meter/frequency_hz"] == pytest.approx(49.98)
        finally:
            await driver.close()


async def test_a_silent_unit_behind_a_gateway_does_not_cut_off_its_neighbours():
    neighbour = meter("meter-a", unit_id=1, timeout_s=0.2, retries=1)
    charger = sim_device(device_spec("charger", CHARGER_POINTS, unit_id=2, timeout_s=0.2, retries=1),
                         CHARGER_VALUES)
    silent = meter("meter-b", unit_id=3, timeout_s=0.2, retries=1)
    silent.fault = Fault(FaultKind.SILENT)
    async with SimModbusServer([neighbour, charger, silent]) as server:
        pool = fast_pool()
        drivers = [ModbusDriver(at_port(d.spec, server.port), pool=pool) for d in (neighbour, charger, silent)]
        try:
            endpoint = drivers[0].endpoint
            assert all(driver.endpoint is endpoint for driver in drivers)
            # Far more unanswered requests in a row than pymodbus tolerates before closing the socket
            # (retries + 3), alternating with the neighbours' polls.
            for _ in range(6):
                results = await asyncio.gather(*(driver.read() for driver in drivers))
                assert qualities(results[0]) == {Quality.GOOD}
                assert qualities(results[1]) == {Quality.GOOD}
                assert Quality.GOOD not in qualities(results[2])
            failed_first_block(drivers[2], results[2], DeviceTimeout)
            assert drivers[2].health().state is HealthState.OFFLINE
            assert drivers[0].health().state is HealthState.OK
            assert endpoint.connects == 1
            # Known silent: one attempt per read instead of retries + 1, so it holds the connection less.
            sent = endpoint.requests_sent
            await drivers[2].read()
            assert endpoint.requests_sent - sent == 1
            # The silent unit alone: its timeouts still do not close the connection under the neighbours.
            for _ in range(4):
                await drivers[2].read()
            assert qualities(await drivers[1].read()) == {Quality.GOOD}
            silent.fault = None
            assert qualities(await drivers[2].read()) == {Quality.GOOD}
            assert drivers[2].health().state is HealthState.OK
        finally:
            for driver in drivers:
                await driver.close()


async def test_an_offline_unit_behind_a_live_gateway_is_a_timeout():
    neighbour = meter("meter-a", unit_id=1)
    gone = meter("meter-b", unit_id=2)
    gone.fault = Fault(FaultKind.OFFLINE)
    async with SimModbusServer([neighbour, gone]) as server:
        assert server.listening
        pool = fast_pool()
        drivers = [ModbusDriver(at_port(d.spec, server.port), pool=pool) for d in (neighbour, gone)]
        try:
            good, bad = await asyncio.gather(*(driver.read() for driver in drivers))
            assert qualities(good) == {Quality.GOOD}
            assert qualities(bad) == {Quality.BAD}
            # The gateway answered exception 11: the device behind it did not respond.
            failed_first_block(drivers[1], bad, DeviceTimeout)
        finally:
            for driver in drivers:
                await driver.close()


async def test_a_device_that_hangs_up_at_once_is_not_hammered():
    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    driver = ModbusDriver(device_spec("rude", METER_POINTS, port=port, timeout_s=0.3), pool=fast_pool())
    try:
        await driver.read()
        await asyncio.sleep(1.5)
        readings = await driver.read()
        assert qualities(readings) == {Quality.BAD}
        # Back-off between attempts (0.05 s doubling to 0.4 s), not a reconnect storm.
        assert 2 <= accepted <= 12, accepted
    finally:
        await driver.close()
        server.close()
        await server.wait_closed()


async def test_malformed_frames_are_typed_errors_and_the_driver_recovers():
    """A byte-level peer (pymodbus's server cannot send broken frames) answering each read in turn."""
    mode = {"answer": "good"}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                transaction, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                request = await reader.readexactly(length - 1)
                function, _, count = struct.unpack(">BHH", request[:5])
                if mode["answer"] == "junk":
                    body = None
                    writer.write(b"\xde\xad\xbe\xef" * 4)
                elif mode["answer"] == "other_function":
                    body = bytes([0x2B, 0x00])
                elif mode["answer"] == "truncated":
                    body = bytes([function, count * 2, 0x00, 0x01])  # says 2×count bytes, carries 2
                else:
                    body = bytes([function, count * 2]) + b"\x00\x07" * count
                if body is not None:
                    writer.write(struct.pack(">HHHB", transaction, 0, len(body) + 1, unit) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    points = tuple(ModbusPointSpec(id=f"r{address}", unit="", function="holding_register", register=address,
                                   data_type="uint16") for address in (0, 5))
    driver = ModbusDriver(device_spec("odd", points, port=port, timeout_s=0.3), pool=fast_pool())

    async def good() -> bool:
        readings = await driver.read()
        return qualities(readings) == {Quality.GOOD} and {r.value for r in readings} == {7}

    try:
        for broken, error_type in (("junk", DeviceTimeout), ("other_function", DecodeError),
                                   ("truncated", ConnectionLost)):
            mode["answer"] = "good"
            await eventually(good)
            mode["answer"] = broken
            readings = await driver.read()
            assert Quality.GOOD not in qualities(readings), broken
            assert isinstance(driver.last_errors["r0"], error_type), (broken, driver.last_errors["r0"])
        # The connection the broken frame cost is replaced at once: the very next read is good.
        mode["answer"] = "good"
        assert await good()
        assert driver.health().state is HealthState.OK
    finally:
        await driver.close()
        server.close()
        await server.wait_closed()
