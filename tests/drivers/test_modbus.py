"""The Modbus driver against simulated devices served by pymodbus on loopback."""

from __future__ import annotations

import pytest
from modbus_fixtures import (
    CHARGER_POINTS,
    CHARGER_VALUES,
    INVERTER_POINTS,
    INVERTER_VALUES,
    METER_POINTS,
    METER_VALUES,
    at_port,
    close_enough,
    device_spec,
    fast_pool,
    sim_device,
)

from drivers.base import (
    DecodeError,
    HealthState,
    IllegalAddress,
    LimitViolation,
    Quality,
    WriteMismatch,
    WriteRejected,
)
from drivers.codec import ModbusCodec
from drivers.modbus import ModbusDriver
from drivers.modbus_plan import plan_reads
from drivers.specs import ModbusPointSpec
from sim.modbus_server import SimModbusServer

MAPS = {
    "meter": (METER_POINTS, METER_VALUES),
    "charger": (CHARGER_POINTS, CHARGER_VALUES),
    "inverter": (INVERTER_POINTS, INVERTER_VALUES),
}


@pytest.fixture
async def site():
    """Meter, charger and inverter behind one simulated gateway (unit ids 1, 2, 3)."""
    devices = {name: sim_device(device_spec(name, points, unit_id=unit), values)
               for unit, (name, (points, values)) in enumerate(MAPS.items(), start=1)}
    pool = fast_pool()
    async with SimModbusServer(list(devices.values())) as server:
        drivers = {name: ModbusDriver(at_port(device.spec, server.port), pool=pool)
                   for name, device in devices.items()}
        yield devices, drivers, server
        for driver in drivers.values():
            await driver.close()


@pytest.mark.parametrize("name", list(MAPS))
async def test_every_point_reads_as_the_device_holds_it(site, name):
    devices, drivers, _ = site
    driver = drivers[name]
    await driver.connect()
    readings = await driver.read()
    points = {p.id: p for p in devices[name].spec.points}
    assert sorted(r.address for r in readings) == sorted(f"{name}/{pid}" for pid in points)
    for reading in readings:
        point_id = reading.address.split("/", 1)[1]
        assert reading.quality is Quality.GOOD, reading
        assert reading.ts.tzinfo is not None
        expected = devices[name].get(point_id)
        assert close_enough(expected, reading.value, points[point_id]), (point_id, expected, reading.value)
    assert driver.health().state is HealthState.OK


async def test_values_are_read_live(site):
    devices, drivers, _ = site
    meter = drivers["meter"]
    first = {r.address: r.value for r in await meter.read(["power_kw"])}
    devices["meter"].set("power_kw", 3.5)
    second = {r.address: r.value for r in await meter.read(["power_kw"])}
    assert first == {"meter/power_kw": -8.432}
    assert second == {"meter/power_kw": 3.5}


@pytest.mark.parametrize("name", list(MAPS))
async def test_every_writable_point_writes_and_reads_back(site, name):
    devices, drivers, _ = site
    driver = drivers[name]
    device = devices[name]
    for point in device.spec.points:
        if not point.writable:
            continue
        value = _other_valid_value(point, device.get(point.id))
        result = await driver.write(point.id, value)
        assert result.address == f"{name}/{point.id}"
        assert close_enough(value, result.read_back, point), (point.id, value, result)
        assert close_enough(value, device.get(point.id), point), (point.id, value, device.get(point.id))
        assert device.writes[-1][1] == point.id
        (reading,) = await driver.read([point.id])
        assert close_enough(value, reading.value, point)


async def test_a_bit_write_keeps_the_other_bits(site):
    devices, drivers, _ = site
    inverter = devices["inverter"]
    assert inverter.get("run") is True
    await drivers["inverter"].write("curtail", True)
    assert (inverter.get("run"), inverter.get("curtail")) == (True, True)
    await drivers["inverter"].write("run", False)
    assert (inverter.get("run"), inverter.get("curtail")) == (False, True)


async def test_state_labels_are_written_as_their_raw_value(site):
    devices, drivers, _ = site
    result = await drivers["charger"].write("phases", "single_phase")
    assert result.read_back == 1
    assert devices["charger"].get("phases") == 1


async def test_values_outside_the_limits_are_refused_before_sending(site):
    devices, drivers, server = site
    charger = drivers["charger"]
    before = server.requests
    with pytest.raises(LimitViolation):
        await charger.write("current_limit_a", 40)
    with pytest.raises(LimitViolation):
        await charger.write("phases", 2)
    with pytest.raises(LimitViolation):
        await charger.write("phases", "two_phase")
    with pytest.raises(WriteRejected):
        await charger.write("power_kw", 1.0)
    with pytest.raises(WriteRejected):
        await charger.write("current_limit_a", None)
    assert server.requests == before
    assert not devices["charger"].writes


async def test_a_device_that_refuses_a_value_raises_write_rejected(site):
    devices, _, server = site
    # The driver's copy of the map allows more than the device does: the device answers exception 3.
    looser = tuple(ModbusPointSpec(**{**_fields(p), "max": 64}) if p.id == "current_limit_a" else p
                   for p in CHARGER_POINTS)
    driver = ModbusDriver(at_port(device_spec("charger", looser, unit_id=2), server.port), pool=fast_pool())
    try:
        with pytest.raises(WriteRejected):
            await driver.write("current_limit_a", 40)
        assert devices["charger"].get("current_limit_a") == 16.0
    finally:
        await driver.close()


async def test_a_device_that_keeps_another_value_raises_write_mismatch(site):
    devices, drivers, _ = site

    def clamp_to_ten(device, point_id, value, priority):
        if point_id == "power_limit_pct" and value > 10:
            device.values[point_id] = 10

    devices["inverter"].on_write(clamp_to_ten)
    with pytest.raises(WriteMismatch):
        await drivers["inverter"].write("power_limit_pct", 50)
    result = await drivers["inverter"].write("power_limit_pct", 5)
    assert result.read_back == 5


async def test_an_address_the_device_lacks_is_illegal_address(site):
    _, _, server = site
    ghost = (ModbusPointSpec(id="ghost", unit="kW", function="input_register", register=5000, data_type="uint16"),)
    driver = ModbusDriver(at_port(device_spec("meter", METER_POINTS + ghost), server.port), pool=fast_pool())
    try:
        readings = {r.address: r for r in await driver.read()}
        assert readings["meter/ghost"].quality is Quality.BAD
        assert isinstance(driver.last_errors["ghost"], IllegalAddress)
        assert readings["meter/power_kw"].quality is Quality.GOOD
        assert driver.health().state is HealthState.DEGRADED
    finally:
        await driver.close()


async def test_a_hole_the_device_refuses_splits_the_block():
    points = (
        ModbusPointSpec(id="a", unit="", function="holding_register", register=0, data_type="uint16"),
        ModbusPointSpec(id="b", unit="", function="holding_register", register=3, data_type="uint16"),
    )
    device = sim_device(device_spec("strict", points), {"a": 7, "b": 9})
    async with SimModbusServer([device], strict_addresses=True) as server:
        driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
        try:
            assert [r.value for r in await driver.read()] == [7, 9]
            assert len(driver.plan()) == 2
            requests = server.requests
            await driver.read()
            assert server.requests - requests == 2
        finally:
            await driver.close()


def test_reads_are_merged_into_the_fewest_requests():
    codecs = [ModbusCodec.for_point(p) for p in METER_POINTS]
    blocks = plan_reads(codecs, max_gap=7)
    assert [(b.function, b.start, b.count) for b in blocks] == [
        ("holding_register", 200, 2), ("holding_register", 210, 1),
        ("input_register", 0, 18), ("input_register", 40, 12),
    ]
    # A hole of exactly max_gap registers is bridged.
    first = plan_reads(codecs, max_gap=8)[0]
    assert (first.function, first.start, first.count) == ("holding_register", 200, 11)
    wide = plan_reads(codecs, max_gap=30)
    assert [(b.function, b.start, b.count) for b in wide] == [
        ("holding_register", 200, 11), ("input_register", 0, 52),
    ]


def test_blocks_respect_the_protocol_limits():
    registers = [ModbusCodec.for_point(ModbusPointSpec(id=f"r{i}", unit="", function="input_register",
                                                       register=i * 2, data_type="float32")) for i in range(200)]
    blocks = plan_reads(registers, max_gap=8)
    assert all(b.count <= 125 for b in blocks)
    assert len(blocks) == 4  # 400 registers / 125
    coils = [ModbusCodec.for_point(ModbusPointSpec(id=f"c{i}", unit="", function="coil", register=i,
                                                   data_type="bool")) for i in range(4500)]
    assert [b.count for b in plan_reads(coils, max_gap=0)] == [2000, 2000, 500]


def _fields(point: ModbusPointSpec) -> dict:
    return {name: getattr(point, name) for name in point.__dataclass_fields__}


def _other_valid_value(point: ModbusPointSpec, current):
    if point.function == "coil" or point.data_type == "bool":
        return not current
    if point.states:
        return next(state for state in point.states if state != current)
    low = point.min if point.min is not None else 0
    high = point.max if point.max is not None else 100
    value = low + (high - low) * 0.37
    if point.data_type in ("float32", "float64") or point.scale != 1:
        return round(value, 1)
    return round(value)


async def test_a_taken_port_is_an_os_error():
    device = sim_device(device_spec("meter", METER_POINTS), METER_VALUES)
    async with SimModbusServer([device]) as server:
        with pytest.raises(OSError, match="cannot listen"):
            await SimModbusServer([device], port=server.port).start()


async def test_a_meter_sending_not_a_number_gives_a_bad_reading(site):
    devices, drivers, _ = site
    devices["meter"].set("voltage_l2_v", float("nan"))
    readings = {r.address: r for r in await drivers["meter"].read()}
    assert readings["meter/voltage_l2_v"].quality is Quality.BAD
    assert isinstance(drivers["meter"].last_errors["voltage_l2_v"], DecodeError)
    assert readings["meter/voltage_l1_v"].quality is Quality.GOOD
    assert drivers["meter"].health().state is HealthState.DEGRADED


async def test_a_write_is_one_request_and_one_read_back(site):
    _, drivers, server = site
    before = server.requests
    await drivers["charger"].write("max_power_kw", 7.5)  # FC16, two registers
    await drivers["charger"].write("charging_enabled", False)  # FC5
    assert server.requests - before == 4
    before = server.requests
    await drivers["inverter"].write("curtail", True)  # a bit: read, FC6, read back
    assert server.requests - before == 3
