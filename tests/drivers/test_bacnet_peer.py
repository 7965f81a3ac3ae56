"""An independent BACnet stack, @bacnet-js/client (node), reads the simulated devices gridctl's driver writes."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest
from bacnet_fixtures import REPO, connected, free_udp_port, same_value, served

from sim.bacnet_server import ahu_device, lighting_device, vav_device

pytestmark = pytest.mark.peers

SCRIPT = REPO / "tests" / "peers" / "bacnet_read.js"
CLIENT_PACKAGE = REPO / "tests" / "peers" / "node" / "node_modules" / "@bacnet-js" / "client"


@pytest.fixture
def node() -> str:
    node = shutil.which("node")
    if node is None or not CLIENT_PACKAGE.is_dir():
        pytest.fail("node and @bacnet-js/client are needed: run scripts/setup-peers.sh", pytrace=False)
    return node


async def _node_read(node: str, address: str, instance: int, objects: list[tuple[str, int]],
                     priority_objects: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    # @bacnet-js/client binds a fixed port (0 would mean 47808): give it a free one, and retry if a
    # neighbour took that port in between.
    extra = [] if priority_objects is None else [json.dumps(priority_objects)]
    for _ in range(3):
        process = await asyncio.create_subprocess_exec(
            node, str(SCRIPT), str(free_udp_port()), address, str(instance), json.dumps(objects), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        if process.returncode == 0:
            return json.loads(out)
        if b"EADDRINUSE" not in err:
            break
    raise AssertionError(f"node client failed ({process.returncode}):\n{err.decode(errors='replace')}")


@pytest.mark.parametrize("make_spec", [ahu_device, lighting_device], ids=["ahu", "lighting"])
async def test_node_client_reads_what_the_driver_wrote(node: str, make_spec: Any) -> None:
    async with served(make_spec()) as (device, _server, spec), connected(spec) as driver:
        commanded = next(p for p in spec.points if p.object_type == "analog-output")
        await driver.write(commanded.id, 37.5)
        gridctl_values = {r.address.split("/")[1]: r.value for r in await driver.read()}

        objects = [(p.object_type, p.instance) for p in spec.points]
        peer = await _node_read(node, spec.address, spec.device_instance, objects)

        assert peer["device_name"] == spec.id
        assert peer["max_apdu"] == 1476
        for point in spec.points:
            key = f"{point.object_type},{point.instance}"
            for service in ("read_property", "read_property_multiple"):
                value = peer[service][key]
                assert same_value(point, device.get(point.id), value), (service, point.id, value)
                assert same_value(point, gridctl_values[point.id], value), (service, point.id, value)
        # The script reads the priority array of the first output object: the one the driver commanded.
        assert next(p for p in spec.points if p.object_type.endswith("-output")) == commanded
        slots = peer["priority_array"][f"{commanded.object_type},{commanded.instance}"]
        assert len(slots) == 16
        assert slots[9] == 37.5
        assert [i for i, slot in enumerate(slots) if slot is not None] == [9]


async def test_node_client_sees_plain_writes_to_an_object_without_priority_array(node: str) -> None:
    async with served(vav_device(), plain_objects={"zone_setpoint"}) as (_device, _server, spec), \
            connected(spec) as driver:
        assert (await driver.write("zone_setpoint", 21.5)).priority is None
        assert (await driver.write("damper_position", 40.0)).priority == 10
        plain, commanded = (("analog-value", 1), ("analog-output", 1))
        peer = await _node_read(node, spec.address, spec.device_instance, [plain, commanded], [plain, commanded])
        # Another stack reads the values written, and agrees on which object has a priority array.
        assert peer["read_property"]["analog-value,1"] == 21.5
        assert peer["read_property"]["analog-output,1"] == 40.0
        # Error class 2, code 32: property, unknown-property.
        assert peer["priority_array"]["analog-value,1"]["error"].endswith("Class:2 - Code:32")
        slots = peer["priority_array"]["analog-output,1"]
        assert slots[9] == 40.0 and [i for i, slot in enumerate(slots) if slot is not None] == [9]
