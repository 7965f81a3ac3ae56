"""The BACnet driver against simulated devices served by bacpypes3 on loopback, in this process."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import socket
import struct

import pytest
from bacnet_fixtures import (
    FAST,
    at,
    connected,
    eventually,
    fast_backoff,
    free_udp_port,
    new_value,
    same_value,
    served,
)
from hypothesis import given
from hypothesis import strategies as st

from drivers.bacnet import BacnetDriver, InstanceMismatch, chunk_plans, discover
from drivers.bacnet_values import ANSWER_OVERHEAD_BYTES, plan_point, shortest_real
from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceException,
    DeviceTimeout,
    HealthState,
    IllegalAddress,
    LimitViolation,
    NotAttempted,
    Override,
    Quality,
    WriteRejected,
)
from drivers.health import Backoff
from drivers.specs import BacnetDeviceSpec, BacnetPointSpec
from sim.bacnet_server import BacnetSimServer, ahu_device, bench_device, lighting_device, sim_device, vav_device
from sim.core import Fault, FaultKind

PROFILES = {"ahu": ahu_device, "vav": vav_device, "lighting": lighting_device}


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_reads_every_point_in_one_request(profile: str) -> None:
    async with served(PROFILES[profile]()) as (device, _server, spec), connected(spec) as driver:
        await driver.connect()
        readings = await driver.read()
        assert [r.address for r in readings] == [f"{spec.id}/{p.id}" for p in spec.points]
        for point, reading in zip(spec.points, readings, strict=True):
            assert reading.quality is Quality.GOOD, reading
            assert same_value(point, device.get(point.id), reading.value), (point.id, reading.value)
            assert reading.ts.tzinfo is not None
        assert driver.stats.read_property_multiple == 1
        assert driver.health().state is HealthState.OK
        # The physics moves a value: the next poll sees it.
        moving = spec.points[0]
        device.set(moving.id, 42.5)
        (reading,) = await driver.read([moving.id])
        assert reading.value == 42.5


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_writes_reads_back_and_relinquishes_every_writable_point(profile: str) -> None:
    async with served(PROFILES[profile]()) as (device, _server, spec), connected(spec) as driver:
        writable = [point for point in spec.points if point.writable]
        assert writable
        for point in writable:
            before = device.get(point.id)
            value = new_value(point, before)
            result = await driver.write(point.id, value)
            assert result.priority == 10
            assert same_value(point, value, result.read_back), (point.id, result)
            assert same_value(point, value, device.get(point.id))
            assert same_value(point, value, device.priority_array(point.id)[9])
            assert (await driver.read_priority_array(point.id)).active_priority == 10
            (reading,) = await driver.read([point.id])
            assert same_value(point, value, reading.value)

            released = await driver.write(point.id, None)
            assert released.read_back is not None
            assert same_value(point, before, released.read_back), (point.id, released)
            assert device.priority_array(point.id) == [None] * 16
            state = await driver.read_priority_array(point.id)
            assert state.active_priority is None
            assert same_value(point, before, state.relinquish_default)


async def test_priority_comes_from_the_call_then_the_point_then_the_device() -> None:
    base = ahu_device()
    points = tuple(dataclasses.replace(p, priority=12) if p.id == "fan_speed" else p for p in base.points)
    async with served(dataclasses.replace(base, points=points, default_priority=14)) as (device, _s, spec):
        async with connected(spec) as driver:
            assert (await driver.write("fan_speed", 40.0)).priority == 12
            assert device.priority_array("fan_speed")[11] == 40.0
            assert (await driver.write("outdoor_air_damper", 30.0)).priority == 14
            assert device.priority_array("outdoor_air_damper")[13] == 30.0
            assert (await driver.write("outdoor_air_damper", 35.0, priority=9)).priority == 9
            assert device.priority_array("outdoor_air_damper")[8] == 35.0
            # The device logs plain ints, not the protocol stack's heavier integer objects.
            assert [(w[3], type(w[3])) for w in device.writes] == [(12, int), (14, int), (9, int)]


async def test_operator_override_at_priority_8_is_detected() -> None:
    async with served(ahu_device()) as (device, _server, spec), connected(spec) as driver:
        device.write("supply_air_setpoint", 18.0, 8)
        with pytest.raises(Override) as raised:
            await driver.write("supply_air_setpoint", 21.0)
        assert raised.value.active_priority == 8
        assert raised.value.point_id == "supply_air_setpoint"
        state = await driver.read_priority_array("supply_air_setpoint")
        assert state.active_priority == 8
        assert state.slots[7] == 18.0 and state.slots[9] == 21.0
        assert state.effective_value == 18.0
        # Once the operator lets go, our priority-10 command is what the device runs.
        device.write("supply_air_setpoint", None, 8)
        (reading,) = await driver.read(["supply_air_setpoint"])
        assert reading.value == 21.0


async def test_limits_are_checked_before_anything_is_sent() -> None:
    async with served(ahu_device()) as (_device, _server, spec), connected(spec) as driver:
        await driver.connect()
        sent = driver.stats.write_property
        with pytest.raises(LimitViolation):
            await driver.write("supply_air_setpoint", 45.0)
        with pytest.raises(LimitViolation):
            await driver.write("mode", 9)
        with pytest.raises(WriteRejected):
            await driver.write("supply_air_temperature", 20.0)  # not writable in the map
        assert driver.stats.write_property == sent


async def test_state_points_take_labels_and_flag_states_the_map_lacks() -> None:
    async with served(ahu_device()) as (device, _server, spec), connected(spec) as driver:
        result = await driver.write("mode", "cool")
        assert (result.requested, result.written, result.read_back) == ("cool", 3, 3)
        assert device.get("mode") == 3
        assert (await driver.write("fan_command", "active")).read_back is True
        with pytest.raises(LimitViolation):
            await driver.write("mode", "boost")
        device.set("mode", 7)
        (reading,) = await driver.read(["mode"])
        assert reading.quality is Quality.BAD and "DecodeError" in (reading.error or "")


async def test_device_errors_are_typed() -> None:
    served_spec = ahu_device()
    async with served(served_spec) as (device, _server, spec):
        # The map disagrees with the device: an object it lacks, a read-only input called writable, and
        # no limit where the device has one.
        extra = (
            BacnetPointSpec(id="missing", unit="°C", writable=True, object_type="analog-value", instance=99),
            BacnetPointSpec(id="input_as_writable", unit="°C", writable=True, object_type="analog-input", instance=1),
            BacnetPointSpec(id="setpoint_no_limit", unit="°C", writable=True, object_type="analog-value", instance=1),
        )
        async with connected(dataclasses.replace(spec, points=spec.points + extra)) as driver:
            readings = {r.address.split("/")[1]: r for r in await driver.read()}
            assert readings["missing"].quality is Quality.BAD
            assert "IllegalAddress" in (readings["missing"].error or "")
            assert all(r.quality is Quality.GOOD for key, r in readings.items() if key != "missing")
            assert driver.health().state is HealthState.DEGRADED

            with pytest.raises(IllegalAddress):
                await driver.write("missing", 1.0)
            with pytest.raises(WriteRejected, match="write-access-denied"):
                await driver.write("input_as_writable", 20.0)
            with pytest.raises(WriteRejected, match="value-out-of-range"):
                await driver.write("setpoint_no_limit", 99.0)

            device.fault = Fault(FaultKind.EXCEPTION)
            readings = await driver.read()
            assert {r.quality for r in readings} == {Quality.BAD}
            assert all("DeviceException" in (r.error or "") for r in readings)
            with pytest.raises(DeviceException, match="operational-problem"):
                await driver.write("fan_speed", 50.0)

            device.fault = Fault(FaultKind.GARBAGE)
            readings = await driver.read(["supply_air_temperature", "fan_command"])
            assert [r.quality for r in readings] == [Quality.BAD, Quality.BAD]
            assert all("DecodeError" in (r.error or "") for r in readings)
            with pytest.raises(DecodeError):
                await driver.write("fan_speed", 50.0)  # the read-back is garbage

            device.fault = None
            assert all(r.quality is Quality.GOOD for r in await driver.read(["supply_air_temperature"]))


async def test_refused_read_property_multiple_falls_back_and_is_remembered() -> None:
    async with served(ahu_device(), refuse_rpm=True) as (device, server, spec), connected(spec) as driver:
        first = await driver.read()
        assert all(r.quality is Quality.GOOD for r in first)
        assert not driver.supports_read_property_multiple
        assert server.requests["read-property-multiple"] == 1
        second = await driver.read()
        assert [r.value for r in second] == [r.value for r in first]
        assert server.requests["read-property-multiple"] == 1  # never asked again
        # Probe + one ReadProperty per point per poll.
        assert server.requests["read-property"] == 1 + 2 * len(spec.points)
        # Writes read back and check the priority array with ReadProperty too.
        result = await driver.write("fan_speed", 61.0)
        assert result.read_back == 61.0
        device.write("fan_speed", 10.0, 8)
        with pytest.raises(Override):
            await driver.write("fan_speed", 62.0)
        assert server.requests["read-property-multiple"] == 1


@pytest.mark.parametrize("max_apdu", [480, 1476])
async def test_requests_fit_the_device_max_apdu(max_apdu: int) -> None:
    async with served(bench_device(objects=200), max_apdu=max_apdu) as (device, server, spec):
        async with connected(spec) as driver:
            await driver.connect()
            assert driver.max_apdu == max_apdu
            readings = await driver.read()
            assert all(r.quality is Quality.GOOD for r in readings)
            assert [r.value for r in readings] == [device.get(p.id) for p in spec.points]
            assert server.requests["aborted-too-long"] == 0
            expected = len(chunk_plans([plan_point(p) for p in spec.points], max_apdu - ANSWER_OVERHEAD_BYTES))
            assert driver.stats.read_property_multiple == expected
            # Each answer carries at least 3/4 of what would fit, so the request count is close to minimal.
            assert expected <= math.ceil(200 * 16 / (max_apdu - 8) * 4 / 3)


async def test_a_device_that_aborts_long_answers_gets_smaller_requests() -> None:
    # The device says 1476 but aborts anything longer than 300 bytes: the driver halves until it fits.
    async with served(bench_device(objects=60), max_apdu=300) as (_device, server, spec):
        async with connected(spec) as driver:
            await driver.connect()
            driver._max_apdu = 1476  # as if the device had advertised more than it can send
            readings = await driver.read()
            assert all(r.quality is Quality.GOOD for r in readings)
            aborted = server.requests["aborted-too-long"]
            assert aborted >= 1
            await driver.read()
            assert server.requests["aborted-too-long"] == aborted  # the smaller size is kept


async def test_offline_at_start_then_recovers() -> None:
    async with served(vav_device()) as (device, _server, spec):
        device.fault = Fault(FaultKind.OFFLINE)
        async with connected(at(spec, spec.address, **FAST), backoff=fast_backoff()) as driver:
            with pytest.raises(DeviceTimeout):
                await driver.connect()
            readings = await driver.read()
            assert {r.quality for r in readings} == {Quality.BAD}
            assert all(r.value is None and r.error for r in readings)
            assert driver.health().state in (HealthState.DEGRADED, HealthState.OFFLINE)

            device.fault = None

            async def all_good() -> bool:
                return all(r.quality is Quality.GOOD for r in await driver.read())

            await eventually(all_good, what="reads after the device came up")
            assert driver.health().state is HealthState.OK


async def test_device_dying_mid_poll_gives_stale_values_then_recovers() -> None:
    async with served(vav_device()) as (device, server, spec):
        async with connected(at(spec, spec.address, **FAST), backoff=fast_backoff()) as driver:
            good = await driver.read()
            assert all(r.quality is Quality.GOOD for r in good)

            # The device takes the request in and dies before answering.
            device.fault = Fault(FaultKind.SILENT)
            seen = server.datagrams_received
            poll = asyncio.create_task(driver.read())

            async def request_arrived() -> bool:
                return server.datagrams_received > seen

            await eventually(request_arrived, what="the poll reaching the device")
            await server.stop()
            device.fault = None
            stale = await poll
            assert [r.quality for r in stale] == [Quality.STALE] * len(stale)
            assert [r.value for r in stale] == [r.value for r in good]
            assert all("DeviceTimeout" in (r.error or "") for r in stale)
            assert driver.health().consecutive_failures >= 1

            await server.start()  # same port: the device reboots where it was

            async def all_good() -> bool:
                return all(r.quality is Quality.GOOD for r in await driver.read())

            await eventually(all_good, what="reads after the device restarted")


async def test_back_off_keeps_a_dead_device_off_the_network() -> None:
    async with served(vav_device()) as (device, server, spec):
        device.fault = Fault(FaultKind.SILENT)
        slow_backoff = Backoff(initial_s=60.0, cap_s=60.0, jitter=0.0)
        async with connected(at(spec, spec.address, **FAST), backoff=slow_backoff) as driver:
            with pytest.raises(DeviceTimeout):
                await driver.connect()
            seen = server.datagrams_received
            for _ in range(5):
                readings = await driver.read()
                assert {r.quality for r in readings} == {Quality.BAD}
                # Nothing was sent: the points say so, with what the device last did and when it is tried again.
                assert all((r.error or "").startswith("NotAttempted: not attempted: backing off after DeviceTimeout")
                           and "next attempt in" in (r.error or "") for r in readings)
            with pytest.raises(NotAttempted, match="next attempt in") as raised:
                await driver.write("zone_setpoint", 21.0)
            assert isinstance(raised.value.cause, DeviceTimeout)
            assert server.datagrams_received == seen
            assert driver.stats.requests == 1


async def test_a_slow_or_silent_device_does_not_delay_the_others() -> None:
    async with (
        served(ahu_device("slow", 11)) as (slow, _s1, slow_spec),
        served(vav_device("silent", 12)) as (silent, _s2, silent_spec),
        served(lighting_device("fast", 13)) as (_fast, _s3, fast_spec),
    ):
        async with (
            connected(at(slow_spec, slow_spec.address, timeout_s=5.0, retries=0)) as slow_driver,
            connected(at(silent_spec, silent_spec.address, timeout_s=1.0, retries=0)) as silent_driver,
            connected(fast_spec) as fast_driver,
        ):
            await asyncio.gather(slow_driver.connect(), silent_driver.connect(), fast_driver.connect())
            slow.fault = Fault(FaultKind.SLOW, delay_s=1.0)
            silent.fault = Fault(FaultKind.SILENT)
            slow_poll = asyncio.create_task(slow_driver.read())
            silent_poll = asyncio.create_task(silent_driver.read())
            fast_polls = 0
            while not (slow_poll.done() and silent_poll.done()):
                readings = await fast_driver.read()
                assert all(r.quality is Quality.GOOD for r in readings)
                fast_polls += 1
            # The other devices' polls completed while the fast one kept polling.
            assert fast_polls >= 5
            assert all(r.quality is Quality.GOOD for r in slow_poll.result())
            assert {r.quality for r in silent_poll.result()} == {Quality.BAD}  # never read before


async def test_discovery_through_a_bbmd() -> None:
    bbmd_device = sim_device(ahu_device("bbmd-ahu", 501))
    async with BacnetSimServer(bbmd_device, bbmd=True) as bbmd:
        members = [sim_device(vav_device(f"vav-{i}", 510 + i)) for i in range(2)]
        servers = [BacnetSimServer(member, foreign=bbmd.address, ttl_s=30) for member in members]
        await asyncio.gather(*(server.start() for server in servers))
        try:
            found = await discover(bbmd=bbmd.address, timeout_s=1.5)
            assert found == sorted([(501, bbmd.address), *((510 + i, s.address) for i, s in enumerate(servers))])
            assert await discover(bbmd=bbmd.address, low_limit=511, high_limit=600, timeout_s=1.0) == [
                (511, servers[1].address)]
            assert await discover(target=servers[0].address, timeout_s=1.0) == [(510, servers[0].address)]
        finally:
            await asyncio.gather(*(server.stop() for server in servers))


async def test_discovery_by_local_broadcast_on_a_shared_port() -> None:
    # Devices on distinct loopback addresses sharing one port, like devices on a LAN sharing 47808.
    port = free_udp_port()
    servers = [BacnetSimServer(sim_device(vav_device(f"vav-{i}", 700 + i)), host=f"127.0.0.{i}/8", port=port)
               for i in (2, 3)]
    await asyncio.gather(*(server.start() for server in servers))
    try:
        found = await discover(interface="127.0.0.1/8", port=port, timeout_s=1.5)
        assert found == [(702, f"127.0.0.2:{port}"), (703, f"127.0.0.3:{port}")]
        async with connected(at(servers[1].spec, found[1][1])) as driver:
            assert all(r.quality is Quality.GOOD for r in await driver.read())
    finally:
        await asyncio.gather(*(server.stop() for server in servers))


def test_discovery_needs_exactly_one_way_to_reach_devices() -> None:
    with pytest.raises(ValueError):
        asyncio.run(discover())
    with pytest.raises(ValueError):
        asyncio.run(discover(bbmd="127.0.0.1:47808", target="127.0.0.1:47809"))


async def test_another_device_at_the_address_is_an_instance_mismatch() -> None:
    async with served(vav_device(instance=2001)) as (_device, server, spec):
        async with connected(dataclasses.replace(spec, device_instance=77, **FAST),
                             backoff=fast_backoff()) as driver:
            with pytest.raises(InstanceMismatch, match=r"device instance mismatch \(found 2001\)") as raised:
                await driver.connect()
            assert isinstance(raised.value, IllegalAddress) and raised.value.found == 2001
            assert "expects 77" in str(raised.value)
            # The points were not read: each says why, and no request reached the device for them.
            received = server.datagrams_received
            readings = await driver.read()
            assert {r.quality for r in readings} == {Quality.BAD}
            assert all((r.error or "").startswith("NotAttempted:") and "device instance mismatch (found 2001)"
                       in (r.error or "") for r in readings)
            assert server.datagrams_received == received
            assert "device instance mismatch (found 2001)" in (driver.health().last_error or "")


def test_chunks_respect_the_byte_budget_and_item_cap() -> None:
    plans = [plan_point(point) for point in bench_device(objects=50).points]
    chunks = chunk_plans(plans, 18 * 20)
    assert [len(chunk) for chunk in chunks] == [20, 20, 10]
    assert [len(chunk) for chunk in chunk_plans(plans, 18 * 20, max_items=7)] == [7] * 7 + [1]
    assert [p for chunk in chunks for p in chunk] == plans
    assert chunk_plans([], 100) == []


def test_a_map_with_an_unknown_property_is_refused() -> None:
    spec = BacnetDeviceSpec(id="x", points=(
        BacnetPointSpec(id="p", unit="", object_type="analog-input", instance=1, property="no-such-property"),))
    with pytest.raises(ValueError):
        BacnetDriver(spec)



@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_real_values_come_back_as_the_same_float32(value: float) -> None:
    shortest = shortest_real(value)
    assert struct.pack("<f", shortest) == struct.pack("<f", value)
    assert len(repr(shortest)) <= len(repr(value))


@given(st.lists(st.sampled_from(["analog-input", "binary-output", "multi-state-value", "accumulator"]),
                max_size=120),
       st.integers(min_value=18, max_value=1476), st.one_of(st.none(), st.integers(min_value=1, max_value=50)))
def test_chunks_keep_order_and_fit_the_budget(object_types: list[str], budget: int, max_items: int | None) -> None:
    plans = [plan_point(BacnetPointSpec(id=f"p{i}", unit="", object_type=object_type, instance=i))
             for i, object_type in enumerate(object_types)]
    chunks = chunk_plans(plans, budget, max_items)
    assert [plan for chunk in chunks for plan in chunk] == plans
    for chunk in chunks:
        assert chunk
        assert len(chunk) == 1 or sum(plan.answer_bytes for plan in chunk) <= budget
        assert max_items is None or len(chunk) <= max_items


async def test_drivers_share_the_site_local_port_and_each_hears_its_own_device() -> None:
    # A BBMD table or a firewall rule names one address and port for gridctl: every driver talks from it.
    port = free_udp_port()
    local = {"local_address": "127.0.0.1", "local_port": port}
    async with (
        served(ahu_device("ahu", 21)) as (ahu, ahu_server, ahu_spec),
        served(vav_device("vav", 22)) as (vav, vav_server, vav_spec),
    ):
        async with (
            connected(at(ahu_spec, ahu_spec.address, **local)) as ahu_driver,
            connected(at(vav_spec, vav_spec.address, **local)) as vav_driver,
        ):
            for _ in range(3):  # side by side: each answer goes to the driver of the device that sent it
                ahu_readings, vav_readings = await asyncio.gather(ahu_driver.read(), vav_driver.read())
                for device, spec, readings in ((ahu, ahu_spec, ahu_readings), (vav, vav_spec, vav_readings)):
                    assert all(r.quality is Quality.GOOD for r in readings), readings
                    assert all(same_value(p, device.get(p.id), r.value) for p, r in zip(spec.points, readings,
                                                                                         strict=True))
            await asyncio.gather(ahu_driver.write("fan_speed", 33.0), vav_driver.write("zone_setpoint", 22.5))
            assert ahu.get("fan_speed") == 33.0 and vav.get("zone_setpoint") == 22.5
            assert ahu_server.sources == vav_server.sources == {f"127.0.0.1:{port}"}
            # Another driver for a device already reached through the port would steal its answers.
            async with connected(at(vav_spec, vav_spec.address, **local)) as twin:
                with pytest.raises(ConnectionLost, match="already reached through"):
                    await twin.connect()
            await ahu_driver.close()
            assert all(r.quality is Quality.GOOD for r in await vav_driver.read())
    # The last driver closed the socket: the port is free again.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))


async def test_a_local_port_held_by_another_program_is_a_clear_connection_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        port = other.getsockname()[1]
        async with served(vav_device()) as (_device, _server, spec):
            async with connected(at(spec, spec.address, local_address="127.0.0.1", local_port=port)) as driver:
                with pytest.raises(ConnectionLost, match=f"cannot open a BACnet/IP socket on 127.0.0.1:{port}"):
                    await driver.connect()


async def test_requests_after_a_timeout_are_not_attempted_and_say_so() -> None:
    async with served(bench_device(objects=60), max_apdu=300) as (device, server, spec):
        async with connected(at(spec, spec.address, timeout_s=1.0, retries=0), backoff=fast_backoff()) as driver:
            await driver.connect()
            chunks = chunk_plans([plan_point(p) for p in spec.points], driver.max_apdu - ANSWER_OVERHEAD_BYTES)
            assert len(chunks) >= 3
            # The first request is answered slowly; the device goes silent while answering it.
            device.fault = Fault(FaultKind.SLOW, delay_s=0.5)
            seen = server.datagrams_received
            poll = asyncio.create_task(driver.read())

            async def first_request_arrived() -> bool:
                return server.datagrams_received > seen

            await eventually(first_request_arrived, what="the first request reaching the device")
            device.fault = Fault(FaultKind.SILENT)
            readings = await poll
            by_point = {r.address.split("/")[1]: r for r in readings}
            answered, timed_out, *skipped = chunks
            assert all(by_point[p.point.id].quality is Quality.GOOD for p in answered)
            assert all((by_point[p.point.id].error or "").startswith("DeviceTimeout:") for p in timed_out)
            for plan in (p for chunk in skipped for p in chunk):
                reading = by_point[plan.point.id]
                assert reading.quality is Quality.BAD
                assert (reading.error or "").startswith("NotAttempted: not attempted after DeviceTimeout:"), reading
            assert [r.address for r in readings] == [f"{spec.id}/{p.id}" for p in spec.points]
            assert driver.stats.read_property_multiple == 2
