"""Every BACnet device of the demonstrator sites, served by the simulator and polled by the driver."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from bacnet_fixtures import REPO, at, connected, new_value, same_value, served, server_process

from drivers.base import Quality
from drivers.specs import BacnetDeviceSpec
from gridctl.config import BacnetDevice, load_site
from gridctl.fieldbus import device_spec

SITES = sorted(path.parent for path in (REPO / "sites").glob("*/site.yaml"))


def _bacnet_specs(site_dir: Path) -> list[BacnetDeviceSpec]:
    site = load_site(site_dir / "site.yaml")
    specs = [device_spec(device, site_dir) for device in site.devices if isinstance(device, BacnetDevice)]
    assert all(isinstance(spec, BacnetDeviceSpec) for spec in specs)
    return specs  # type: ignore[return-value]


def test_the_demonstrators_have_bacnet_devices() -> None:
    assert {"zac-haute-deule", "zac-saint-sauveur", "zac-union"} <= {site.name for site in SITES}
    assert all(_bacnet_specs(site) for site in SITES)


@pytest.mark.parametrize("site_dir", SITES, ids=[site.name for site in SITES])
async def test_every_bacnet_device_of_the_site(site_dir: Path) -> None:
    specs = _bacnet_specs(site_dir)
    async with contextlib.AsyncExitStack() as stack:
        # The site's own ports may be taken on a shared machine: serve each device on a free one.
        served_devices = [await stack.enter_async_context(served(spec)) for spec in specs]
        drivers = [await stack.enter_async_context(connected(spec)) for _device, _server, spec in served_devices]

        all_readings = await asyncio.gather(*(driver.read() for driver in drivers))
        for (device, _server, spec), readings in zip(served_devices, all_readings, strict=True):
            for point, reading in zip(spec.points, readings, strict=True):
                assert reading.quality is Quality.GOOD, reading
                assert same_value(point, device.get(point.id), reading.value), reading

        for (device, _server, spec), driver in zip(served_devices, drivers, strict=True):
            for point in (p for p in spec.points if p.writable):
                before = device.get(point.id)
                value = new_value(point, before)
                expected_priority = point.priority or spec.default_priority
                result = await driver.write(point.id, value)
                assert result.priority == expected_priority
                assert same_value(point, value, result.read_back), (spec.id, point.id, result)
                assert same_value(point, value, device.priority_array(point.id)[expected_priority - 1])
                released = await driver.write(point.id, None)
                assert same_value(point, before, released.read_back), (spec.id, point.id, released)
            assert driver.stats.read_property_multiple >= 1


async def test_a_site_device_served_by_another_process() -> None:
    site_dir = REPO / "sites" / "zac-union"
    spec = next(s for s in _bacnet_specs(site_dir) if s.id == "offices-ahu")
    async with server_process("--site", str(site_dir), "--device", spec.id) as process:
        assert process.device_instance == spec.device_instance
        async with connected(at(spec, process.address)) as driver:
            readings = await driver.read()
            assert [r.quality for r in readings] == [Quality.GOOD] * len(spec.points)
            setpoint = next(p for p in spec.points if p.writable and p.object_type == "analog-value")
            value = new_value(setpoint, readings[spec.points.index(setpoint)].value or 0.0)
            assert same_value(setpoint, value, (await driver.write(setpoint.id, value)).read_back)
