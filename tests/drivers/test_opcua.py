"""The OPC-UA driver against the simulated asyncua server on loopback: reads, writes, subscriptions."""

from __future__ import annotations

import asyncio
import math
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import pytest_asyncio

from drivers.base import (
    DecodeError,
    HealthState,
    IllegalAddress,
    LimitViolation,
    Quality,
    Reading,
    WriteRejected,
)
from drivers.health import Backoff
from drivers.opcua import OpcuaDriver
from drivers.opcua_codec import INTEGER_RANGES, encode, parse_node_id
from drivers.specs import OpcuaDeviceSpec, OpcuaPointSpec
from sim.core import Fault, FaultKind, SimDevice, WallClock
from sim.opcua_server import OpcuaSimServer

NS = "urn:gridctl:test:bms"


def bms_spec(endpoint: str = "opc.tcp://127.0.0.1:4840", *, subscription: bool = False,
             device_id: str = "bms") -> OpcuaDeviceSpec:
    def point(pid: str, data_type: str, **kwargs: object) -> OpcuaPointSpec:
        return OpcuaPointSpec(id=pid, unit=str(kwargs.pop("unit", "")), node_id=f"nsu={NS};s={device_id}.{pid}",
                              data_type=data_type, **kwargs)  # type: ignore[arg-type]

    points = (
        point("supply_temperature_c", "Double", unit="degC"),
        point("setpoint_c", "Float", unit="degC", writable=True, min=12.0, max=28.0),
        point("enabled", "Boolean", writable=True),
        point("mode", "Int16", writable=True, min=0, max=3, states={0: "off", 1: "heat", 2: "cool", 3: "auto"}),
        point("fan_speed_rpm", "UInt16", unit="rpm", writable=True, max=3000),
        point("runtime_s", "UInt32", unit="s", writable=True),
        point("energy_wh", "Int64", unit="Wh", writable=True),
        point("flow_m3_per_h", "Double", unit="m3/h", writable=True, min=0.0, max=50.0),
        point("alarm_code", "Int32"),
        point("counter", "UInt64", writable=True),
        point("damper_raw", "Byte", writable=True),
        point("offset_raw", "SByte", writable=True),
        point("label", "String", writable=True),
        OpcuaPointSpec(id="numeric_id", unit="", node_id=f"nsu={NS};i={zlib.crc32(device_id.encode()) % 99_991}",
                       data_type="Int32", writable=True),
    )
    return OpcuaDeviceSpec(id=device_id, endpoint=endpoint, timeout_s=1.0, retries=1, poll_interval_s=0.2,
                           subscription=subscription, points=points)


INITIAL = {"supply_temperature_c": 19.5, "setpoint_c": 21.0, "mode": 1, "fan_speed_rpm": 1200, "alarm_code": -3,
           "energy_wh": 2**40, "label": "AHU-1"}


def fast_backoff() -> Backoff:
    return Backoff(initial_s=0.05, cap_s=0.3)


def sample_value(point: OpcuaPointSpec, current: object) -> object:
    """A value different from `current`, valid for the point's type and limits."""
    if point.data_type == "Boolean":
        return not current
    if point.data_type == "String":
        return f"{current}-x"
    if point.states:
        return next(raw for raw in sorted(point.states) if raw != current)
    low = point.min if point.min is not None else 0
    high = point.max if point.max is not None else low + 100
    if point.data_type in INTEGER_RANGES:
        type_low, type_high = INTEGER_RANGES[point.data_type]
        low, high = max(math.ceil(low), type_low), min(math.floor(high), type_high, max(math.ceil(low), type_low) + 100)
        value = (low + high) // 2
        return value if value != current else value + 1 if value + 1 <= high else value - 1
    value = round(low + (high - low) * 0.37, 2)
    return value if value != current else value + 0.5


async def eventually(condition: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.02) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)


async def eventually_read(driver: OpcuaDriver, predicate: Callable[[list[Reading]], bool],
                          timeout_s: float = 10.0) -> list[Reading]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        readings = await driver.read()
        if predicate(readings):
            return readings
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"readings never satisfied the condition: {readings}")
        await asyncio.sleep(0.05)


# Starting an asyncua server builds the whole standard address space (about a second of CPU), so
# the tests of this module share one server, each with a device of its own.
pytestmark = pytest.mark.asyncio(loop_scope="module")
SHARED_DEVICES = 12


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server() -> AsyncIterator[tuple[OpcuaSimServer, list[SimDevice]]]:
    """The module's server and the devices no test has used yet."""
    devices = [SimDevice(bms_spec(device_id=f"bms{index}"), WallClock(), INITIAL) for index in range(SHARED_DEVICES)]
    async with OpcuaSimServer(devices) as server:
        yield server, list(devices)


@pytest_asyncio.fixture(loop_scope="module")
async def bms(shared_server: tuple[OpcuaSimServer, list[SimDevice]]) -> tuple[SimDevice, OpcuaSimServer]:
    """A device nobody else in the module uses, on the shared server."""
    server, unused = shared_server
    assert unused, "raise SHARED_DEVICES"
    return unused.pop(0), server


@pytest_asyncio.fixture(loop_scope="module")
async def own_bms() -> AsyncIterator[tuple[SimDevice, OpcuaSimServer]]:
    """A device on a server of its own, for tests that change server-wide settings."""
    device = SimDevice(bms_spec(), WallClock(), INITIAL)
    async with OpcuaSimServer([device]) as server:
        yield device, server


def spec_of(bms: tuple[SimDevice, OpcuaSimServer], **changes: object) -> OpcuaDeviceSpec:
    device, server = bms
    return replace(device.spec, endpoint=server.endpoint, **changes)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="module")
async def driver(bms: tuple[SimDevice, OpcuaSimServer]) -> AsyncIterator[OpcuaDriver]:
    driver = OpcuaDriver(spec_of(bms), backoff=fast_backoff())
    await driver.connect()
    yield driver
    await driver.close()


async def test_reads_every_point_in_one_request(bms: tuple[SimDevice, OpcuaSimServer], driver: OpcuaDriver) -> None:
    device, server = bms
    reads_before = server.requests
    readings = await driver.read()
    assert [r.address for r in readings] == [f"{device.id}/{p.id}" for p in driver.spec.points]
    assert all(r.quality is Quality.GOOD and r.error is None for r in readings), readings
    by_point = {r.address.split("/")[1]: r for r in readings}
    for point_id, value in INITIAL.items():
        assert by_point[point_id].value == value
        assert type(by_point[point_id].value) is type(value)
    assert by_point["enabled"].value is False
    assert all(r.ts.tzinfo is not None for r in readings)
    assert driver.read_requests == 1
    assert server.requests - reads_before == 1
    # A subset is one more request.
    subset = await driver.read(["label", "alarm_code"])
    assert [r.value for r in subset] == ["AHU-1", -3]
    assert driver.read_requests == 2


async def test_writes_and_reads_back_every_writable_point(bms: tuple[SimDevice, OpcuaSimServer],
                                                          driver: OpcuaDriver) -> None:
    device, _ = bms
    writable = [p for p in driver.spec.points if p.writable]
    assert len(writable) >= 10
    for point in writable:
        value = sample_value(point, device.get(point.id))
        result = await driver.write(point.id, value)
        assert result.address == f"{device.id}/{point.id}"
        assert result.requested == value
        if point.data_type == "Float":
            assert result.read_back == pytest.approx(value, rel=1e-6)
        else:
            assert result.read_back == value
        # The write reached the simulated device, typed as the point says.
        assert device.get(point.id) == result.read_back
    readings = {r.address.split("/")[1]: r.value for r in await driver.read()}
    for point in writable:
        assert readings[point.id] == device.get(point.id)
    assert [w[1] for w in device.writes] == [p.id for p in writable]


async def test_physics_changes_reach_the_client(bms: tuple[SimDevice, OpcuaSimServer], driver: OpcuaDriver) -> None:
    device, server = bms
    device.set("supply_temperature_c", 24.75)
    device.set("alarm_code", 17)
    await server.sync()
    readings = {r.address: r.value for r in await driver.read(["supply_temperature_c", "alarm_code"])}
    assert readings == {f"{device.id}/supply_temperature_c": 24.75, f"{device.id}/alarm_code": 17}


async def test_state_labels_are_written_as_raw_values(bms: tuple[SimDevice, OpcuaSimServer],
                                                      driver: OpcuaDriver) -> None:
    device, _ = bms
    result = await driver.write("mode", "cool")
    assert result.written == 2 and result.read_back == 2
    assert device.get("mode") == 2
    with pytest.raises(LimitViolation, match="defrost"):
        await driver.write("mode", "defrost")
    with pytest.raises(LimitViolation):
        await driver.write("mode", 7)  # not one of the states


async def test_refuses_writes_outside_limits_before_sending(bms: tuple[SimDevice, OpcuaSimServer],
                                                            driver: OpcuaDriver) -> None:
    device, server = bms
    requests = server.requests
    with pytest.raises(LimitViolation):
        await driver.write("setpoint_c", 35.0)
    with pytest.raises(LimitViolation):
        await driver.write("fan_speed_rpm", 3001)
    with pytest.raises(LimitViolation):
        await driver.write("damper_raw", 256)  # Byte range
    with pytest.raises(LimitViolation):
        await driver.write("offset_raw", -129)  # SByte range
    with pytest.raises(WriteRejected):
        await driver.write("runtime_s", 1.5)  # not an integer
    with pytest.raises(WriteRejected):
        await driver.write("enabled", "yes")
    with pytest.raises(WriteRejected):
        await driver.write("supply_temperature_c", 20.0)  # read-only in the site's description
    with pytest.raises(WriteRejected):
        await driver.write("setpoint_c", None)
    assert server.requests == requests
    assert not device.writes


async def test_server_status_codes_become_typed_errors(bms: tuple[SimDevice, OpcuaSimServer]) -> None:
    spec = spec_of(bms)
    # The site claims the measurement is writable, the server says it is not.
    claims_writable = tuple(replace(p, writable=True) if p.id == "alarm_code" else p for p in spec.points)
    unknown = OpcuaPointSpec(id="ghost", unit="", node_id=f"nsu={NS};s=bms.ghost", data_type="Double",
                             writable=True)
    elsewhere = OpcuaPointSpec(id="elsewhere", unit="", node_id="nsu=urn:nobody:here;s=x", data_type="Double",
                               writable=True)
    driver = OpcuaDriver(replace(spec, points=(*claims_writable, unknown, elsewhere)), backoff=fast_backoff())
    await driver.connect()
    try:
        with pytest.raises(WriteRejected, match=r"BadUserAccessDenied|BadNotWritable"):
            await driver.write("alarm_code", 5)
        # asyncua checks access rights before existence: an unknown node is BadUserAccessDenied there
        # (node-opcua answers BadNodeIdUnknown, see the peer tests).
        with pytest.raises(WriteRejected, match="BadUserAccessDenied"):
            await driver.write("ghost", 1.0)
        with pytest.raises(IllegalAddress, match="urn:nobody:here"):
            await driver.write("elsewhere", 1.0)
        readings = {r.address.split("/")[1]: r for r in await driver.read()}
        assert readings["ghost"].quality is Quality.BAD and readings["ghost"].error == "BadNodeIdUnknown"
        assert readings["elsewhere"].quality is Quality.BAD and "urn:nobody:here" in (readings["elsewhere"].error or "")
        assert readings["supply_temperature_c"].quality is Quality.GOOD
        health = driver.health()
        assert health.state == "degraded" and "2 of" in (health.last_error or "")
    finally:
        await driver.close()


async def test_typed_variant_is_required_for_float_nodes(bms: tuple[SimDevice, OpcuaSimServer]) -> None:
    """The reason writes carry the point's Variant type: the untyped float is refused by the server."""
    from asyncua import Client, ua

    _, server = bms
    spec = spec_of(bms)
    setpoint = next(p for p in spec.points if p.id == "setpoint_c")
    async with Client(server.endpoint) as client:
        namespace = await client.get_namespace_index(NS)
        node = client.get_node(parse_node_id(setpoint.node_id).resolve(await client.get_namespace_array()))
        assert node.nodeid.NamespaceIndex == namespace
        with pytest.raises(ua.UaStatusCodeError, match="BadTypeMismatch"):
            await node.write_value(ua.DataValue(ua.Variant(22.5)))
        await node.write_value(ua.DataValue(encode(setpoint, 22.5)))
        assert await node.read_value() == 22.5


async def test_garbage_values_are_bad_with_decode_error(bms: tuple[SimDevice, OpcuaSimServer],
                                                         driver: OpcuaDriver) -> None:

    device, server = bms
    device.fault = Fault(FaultKind.GARBAGE)
    await server.sync()
    readings = await driver.read()
    numeric = [r for r in readings if not r.address.endswith("/label")]
    assert all(r.quality is Quality.BAD and r.value is None for r in numeric)
    assert all(DecodeError.__name__ in (r.error or "") for r in numeric)
    device.fault = None
    await server.sync()
    assert all(r.quality is Quality.GOOD for r in await driver.read())


async def test_subscription_mode_serves_the_cache(bms: tuple[SimDevice, OpcuaSimServer]) -> None:
    device, server = bms
    driver = OpcuaDriver(spec_of(bms, subscription=True), backoff=fast_backoff())
    await driver.connect()
    try:
        readings = await eventually_read(driver, lambda rs: all(r.quality is Quality.GOOD for r in rs))
        assert {r.address.split("/")[1]: r.value for r in readings}["supply_temperature_c"] == 19.5
        reads = server.requests
        device.set("supply_temperature_c", 26.5)
        await eventually_read(driver, lambda rs: rs[0].value == 26.5)
        # Served from data-change notifications: no Read requests reached the server.
        assert server.requests == reads
        assert driver.read_requests == 1  # the one CreateMonitoredItems
        result = await driver.write("setpoint_c", 23.5)
        assert result.read_back == 23.5
        assert (await driver.read(["setpoint_c"]))[0].value == 23.5  # at once, not after the next publish
        device.set("setpoint_c", 18.0)  # the device changes it on its own: the subscription follows
        await eventually_read(driver, lambda rs: rs[1].value == 18.0)
    finally:
        await driver.close()


async def test_splits_reads_only_when_the_server_limits_demand_it(own_bms: tuple[SimDevice, OpcuaSimServer]) -> None:
    from asyncua import ua

    _, server = own_bms
    assert server._server is not None
    limit = ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
    await server._server.write_attribute_value(limit, ua.DataValue(ua.Variant(5, ua.VariantType.UInt32)))
    driver = OpcuaDriver(spec_of(own_bms), backoff=fast_backoff())
    await driver.connect()
    try:
        readings = await driver.read()
        assert len(readings) == 14 and all(r.quality is Quality.GOOD for r in readings)
        assert driver.read_requests == 3  # 14 nodes, at most 5 per Read
    finally:
        await driver.close()


async def test_reading_without_connect_connects_in_the_background(bms: tuple[SimDevice, OpcuaSimServer]) -> None:
    driver = OpcuaDriver(spec_of(bms), backoff=fast_backoff())
    try:
        first = await driver.read()
        assert all(r.quality is Quality.BAD and "not connected" in (r.error or "") for r in first)
        await eventually_read(driver, lambda rs: all(r.quality is Quality.GOOD for r in rs))
        assert driver.connections == 1
    finally:
        await driver.close()
    # Closed means closed: reading again does not reconnect.
    readings = await driver.read()
    assert all(r.quality is Quality.STALE for r in readings)
    await asyncio.sleep(0.2)
    assert not driver.connected and driver.connections == 1


async def test_splits_reads_when_the_server_refuses_too_many_operations(
        own_bms: tuple[SimDevice, OpcuaSimServer]) -> None:
    """A server that states no limit but refuses large Reads (BadTooManyOperations) gets smaller ones."""
    from asyncua import ua
    from asyncua.common.callback import CallbackType
    from asyncua.common.utils import ServiceError

    _, server = own_bms
    assert server._server is not None
    refused = []

    def at_most_five(event: object, _dispatcher: object) -> None:
        nodes = event.request_params.NodesToRead  # type: ignore[attr-defined]
        if len(nodes) > 5:
            refused.append(len(nodes))
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)

    # Priority 1: alongside the simulator's own PreRead listener (priority 0), not instead of it.
    server._server.iserver.callback_service.addListener(CallbackType.PreRead, at_most_five, 1)
    driver = OpcuaDriver(spec_of(own_bms), backoff=fast_backoff())
    await driver.connect()
    try:
        readings = await driver.read()
        assert len(readings) == 14 and all(r.quality is Quality.GOOD for r in readings)
        assert refused == [14, 7]  # 14 → 7 → 3 nodes per Read
        requests = driver.read_requests
        assert all(r.quality is Quality.GOOD for r in await driver.read())
        assert driver.read_requests - requests == 5  # ceil(14 / 3), planned once and kept
        assert refused == [14, 7]
        assert driver.connections == 1
    finally:
        await driver.close()


async def test_reads_after_a_silent_chunk_are_not_attempted(own_bms: tuple[SimDevice, OpcuaSimServer]) -> None:
    """A server that stops answering in the middle of a chunked poll: the chunk it left unanswered timed
    out, the chunks after it were never sent, and each reading says which."""
    from asyncua import ua
    from asyncua.common.callback import CallbackType

    device, server = own_bms
    assert server._server is not None
    limit = ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
    await server._server.write_attribute_value(limit, ua.DataValue(ua.Variant(5, ua.VariantType.UInt32)))
    driver = OpcuaDriver(spec_of(own_bms, timeout_s=0.5, retries=0), backoff=Backoff(initial_s=30.0, cap_s=30.0))
    await driver.connect()
    reads: list[int] = []

    def silent_after_the_first_read(event: object, _dispatcher: object) -> None:
        reads.append(len(event.request_params.NodesToRead))  # type: ignore[attr-defined]
        device.fault = Fault(FaultKind.SILENT)

    # Priority 1: after the simulator's own PreRead listener, which holds requests while the device is silent.
    server._server.iserver.callback_service.addListener(CallbackType.PreRead, silent_after_the_first_read, 1)
    try:
        readings = await driver.read()
        assert reads == [5]
        ids = [p.id for p in device.spec.points]
        by_id = dict(zip(ids, readings, strict=True))
        assert all(by_id[pid].quality is Quality.GOOD for pid in ids[:5])
        assert all(by_id[pid].quality is Quality.BAD and (by_id[pid].error or "").startswith("read: no answer")
                   for pid in ids[5:10])
        assert all((by_id[pid].error or "").startswith("not attempted after DeviceTimeout: read: no answer")
                   for pid in ids[10:])
        assert driver.read_requests == 2  # two Reads sent of the three planned
        assert driver.health().state is HealthState.DEGRADED
    finally:
        device.fault = None
        await driver.close()
