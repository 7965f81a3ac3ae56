"""The BACnet driver against simulated devices served by other processes (`python -m sim.bacnet_server`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util

import pytest
from bacnet_fixtures import REPO, connected, server_process

from drivers.bacnet import discover
from drivers.base import Override, Quality
from drivers.specs import BacnetDeviceSpec
from sim.bacnet_server import ahu_device, vav_device

pytestmark = pytest.mark.slow


def _spec_for(base: BacnetDeviceSpec, address: str, instance: int) -> BacnetDeviceSpec:
    return dataclasses.replace(base, address=address, device_instance=instance)


async def test_read_write_relinquish_and_override_across_processes() -> None:
    async with server_process("--profile", "ahu", "--instance", "1201") as device:
        spec = _spec_for(ahu_device(), device.address, device.device_instance)
        operator_spec = _spec_for(ahu_device("operator-console"), device.address, device.device_instance)
        async with connected(spec) as driver, connected(operator_spec) as operator:
            readings = await driver.read()
            assert [r.quality for r in readings] == [Quality.GOOD] * len(spec.points)
            assert driver.stats.read_property_multiple == 1

            result = await driver.write("supply_air_setpoint", 19.5)
            assert (result.priority, result.read_back) == (10, 19.5)
            state = await driver.read_priority_array("supply_air_setpoint")
            assert state.slots[9] == 19.5 and state.active_priority == 10
            relinquish_default = state.relinquish_default

            released = await driver.write("supply_air_setpoint", None)
            assert released.read_back == relinquish_default
            assert (await driver.read_priority_array("supply_air_setpoint")).active_priority is None

            # An operator takes the point at priority 8 from another client.
            await operator.write("supply_air_setpoint", 17.0, priority=8)
            with pytest.raises(Override) as raised:
                await driver.write("supply_air_setpoint", 22.0)
            assert raised.value.active_priority == 8
            state = await driver.read_priority_array("supply_air_setpoint")
            assert (state.slots[7], state.slots[9], state.effective_value) == (17.0, 22.0, 17.0)

            # Binary and multi-state points across the wire too.
            assert (await driver.write("fan_command", True)).read_back is True
            assert (await driver.write("mode", 3)).read_back == 3

            await operator.write("supply_air_setpoint", None, priority=8)
            (reading,) = await driver.read(["supply_air_setpoint"])
            assert reading.value == 22.0


async def test_discovery_through_a_bbmd_in_another_process() -> None:
    async with contextlib.AsyncExitStack() as stack:
        bbmd = await stack.enter_async_context(
            server_process("--profile", "ahu", "--instance", "1301", "--bbmd"))
        members = await asyncio.gather(*(
            stack.enter_async_context(server_process(
                "--profile", "vav", "--device", f"vav-{i}", "--instance", str(1310 + i), "--foreign", bbmd.address))
            for i in range(2)))
        found = await discover(bbmd=bbmd.address, timeout_s=2.0)
        expected = [(bbmd.device_instance, bbmd.address), *((m.device_instance, m.address) for m in members)]
        assert found == sorted(expected)

        # What discovery found is enough to poll the device.
        instance, address = found[-1]
        async with connected(_spec_for(vav_device(), address, instance)) as driver:
            assert all(r.quality is Quality.GOOD for r in await driver.read())


def test_the_benchmark_runs_and_uses_the_minimal_number_of_requests() -> None:
    loaded = importlib.util.spec_from_file_location("drivers_bacnet_bench", REPO / "bench" / "drivers_bacnet.py")
    assert loaded is not None and loaded.loader is not None
    bench = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(bench)
    result = bench.run(duration_s=0.3, rounds=1, objects=120)
    assert result["gridctl_points_per_s"] > 0 and result["raw_bacpypes3_points_per_s"] > 0
    assert result["gridctl_requests_per_poll"] == result["minimal_requests_per_poll"] == 2
    assert result["per_point_requests_per_poll"] == 120
