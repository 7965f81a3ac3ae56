"""Every OPC-UA device of the three demonstrators, as the site files describe them, served and polled.

The devices of one endpoint share one simulated server (as on site); the test moves it to a free
port. The driver reads every point in one request and writes and reads back every writable point.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from test_opcua import fast_backoff, sample_value

from drivers.base import Quality
from drivers.opcua import OpcuaDriver
from drivers.specs import OpcuaDeviceSpec
from gridctl.config import load_site
from gridctl.fieldbus import device_spec
from sim.core import SimDevice, WallClock
from sim.opcua_server import OpcuaSimServer

SITES = Path(__file__).resolve().parents[2] / "sites"
SITE_NAMES = ("zac-saint-sauveur", "zac-union", "zac-haute-deule")


def opcua_specs(site_name: str) -> list[OpcuaDeviceSpec]:
    site_dir = SITES / site_name
    site = load_site(site_dir / "site.yaml")
    specs = [device_spec(device, site_dir) for device in site.devices]
    return [spec for spec in specs if isinstance(spec, OpcuaDeviceSpec)]


def on_port(endpoint: str, port: int) -> str:
    parts = urlsplit(endpoint)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


@pytest.mark.parametrize("site_name", SITE_NAMES)
async def test_every_opcua_point_of_the_demonstrator(site_name: str) -> None:
    specs = opcua_specs(site_name)
    assert specs, f"{site_name} has no OPC-UA devices"
    by_endpoint: dict[str, list[SimDevice]] = defaultdict(list)
    for spec in specs:
        initial = {p.id: sample_value(p, None) for p in spec.points}
        by_endpoint[spec.endpoint].append(SimDevice(spec, WallClock(), initial))
    servers = [OpcuaSimServer(devices) for devices in by_endpoint.values()]
    drivers: list[OpcuaDriver] = []
    try:
        for server in servers:
            await server.start()
            for device in server.devices:
                spec = dataclasses.replace(device.spec, endpoint=on_port(device.spec.endpoint, server.port),
                                           timeout_s=2.0)
                drivers.append(OpcuaDriver(spec, backoff=fast_backoff()))
        devices = {device.id: device for server in servers for device in server.devices}
        points_read = points_written = 0
        for driver in drivers:
            device = devices[driver.device_id]
            await driver.connect()
            readings = await driver.read()
            assert driver.read_requests == 1
            assert [r.address for r in readings] == [f"{driver.device_id}/{p.id}" for p in driver.spec.points]
            for point, reading in zip(driver.spec.points, readings, strict=True):
                assert reading.quality is Quality.GOOD, reading
                expected = device.get(point.id)
                if point.data_type == "Float":
                    assert reading.value == pytest.approx(expected, rel=1e-6)
                else:
                    assert reading.value == expected
                points_read += 1
            for point in driver.spec.points:
                if not point.writable:
                    continue
                value = sample_value(point, device.get(point.id))
                result = await driver.write(point.id, value)
                assert result.read_back == pytest.approx(value, rel=1e-6)
                assert device.get(point.id) == result.read_back
                points_written += 1
        assert points_read == sum(len(spec.points) for spec in specs)
        assert points_written == sum(1 for spec in specs for p in spec.points if p.writable)
        assert points_written >= 1
    finally:
        for driver in drivers:
            await driver.close()
        for server in servers:
            await server.stop()
