"""Every Modbus device of the three demonstrators, as the site files describe them, served and polled.

Each host:port of a site becomes one simulated server (devices at their unit ids, like the gateways
on site); the driver reads every point and writes and reads back every writable point.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from modbus_fixtures import close_enough, fast_pool, sim_device

from drivers.base import HealthState, Quality, Value
from drivers.codec import INTEGER_RANGE
from drivers.modbus import ModbusDriver
from drivers.specs import ModbusDeviceSpec, ModbusPointSpec
from gridctl.config import load_site
from gridctl.fieldbus import device_spec
from sim.modbus_server import start_modbus_servers

SITES = Path(__file__).resolve().parents[2] / "sites"
SITE_NAMES = ("zac-saint-sauveur", "zac-union", "zac-haute-deule")


def modbus_specs(site_name: str) -> list[ModbusDeviceSpec]:
    site_dir = SITES / site_name
    site = load_site(site_dir / "site.yaml")
    specs = [device_spec(device, site_dir) for device in site.devices]
    return [spec for spec in specs if isinstance(spec, ModbusDeviceSpec)]


def sample_value(point: ModbusPointSpec, index: int, shift: float = 0.0) -> Value:
    """A value the point can hold exactly, inside its limits, different from point to point."""
    if point.function in ("coil", "discrete_input") or point.data_type == "bool":
        return (index + int(shift)) % 2 == 0
    if point.states:
        states = sorted(point.states)
        return states[(index + int(shift)) % len(states)]
    low = point.min if point.min is not None else 0.0
    high = point.max if point.max is not None else 1000.0
    fraction = (0.2 + 0.05 * (index % 7) + shift) % 1.0
    target = low + (high - low) * fraction
    if point.data_type.startswith("float"):
        return round(target, 2)
    raw = round((target - point.offset) / point.scale)
    low_raw, high_raw = INTEGER_RANGE[point.data_type]
    raw = min(max(raw, low_raw), high_raw)
    value = raw * point.scale + point.offset
    if point.min is not None and value < point.min:
        value += abs(point.scale)
    if point.max is not None and value > point.max:
        value -= abs(point.scale)
    return value if (point.scale, point.offset) != (1.0, 0.0) else int(value)


@pytest.mark.parametrize("site_name", SITE_NAMES)
async def test_every_modbus_point_of_the_demonstrator(site_name: str):
    specs = modbus_specs(site_name)
    assert specs, f"{site_name} has no Modbus devices"
    devices_by_id = {}
    for spec in specs:
        initial = {p.id: sample_value(p, i) for i, p in enumerate(spec.points)}
        devices_by_id[spec.id] = sim_device(spec, initial)
    pool = fast_pool()
    drivers: list[ModbusDriver] = []
    servers = await start_modbus_servers(devices_by_id.values(), free_ports=True)
    try:
        # One server per host:port of the site, several unit ids behind the shared ones.
        assert len(servers) == len({(spec.host, spec.port) for spec in specs})
        for server in servers:
            for device in server.devices:
                # Same map, same unit id; only the port is the test's free one.
                spec = dataclasses.replace(device.spec, port=server.port, timeout_s=2.0)
                drivers.append(ModbusDriver(spec, pool=pool))
        devices = {device.id: device for server in servers for device in server.devices}
        points_read = points_written = 0
        for driver in drivers:
            device = devices[driver.device_id]
            readings = await driver.read()
            assert len(readings) == len(device.spec.points)
            for reading in readings:
                point_id = reading.address.split("/", 1)[1]
                point = device.points[point_id]
                assert reading.quality is Quality.GOOD, reading
                assert close_enough(device.get(point_id), reading.value, point), (reading, device.get(point_id))
                points_read += 1
            for index, point in enumerate(device.spec.points):
                if not point.writable:
                    continue
                value = sample_value(point, index, shift=0.31)
                result = await driver.write(point.id, value)
                assert close_enough(value, result.read_back, point), (point.id, value, result)
                assert close_enough(value, device.get(point.id), point)
                points_written += 1
            assert driver.health().state is HealthState.OK
            # One request per contiguous stretch of registers: never one per point.
            assert len(driver.plan()) < len(device.spec.points) or len(device.spec.points) <= 2
        assert points_read == sum(len(spec.points) for spec in specs)
        assert points_written == sum(p.writable for spec in specs for p in spec.points)
    finally:
        for driver in drivers:
            await driver.close()
        for server in servers:
            await server.stop()
