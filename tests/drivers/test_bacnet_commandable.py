"""BACnet objects with and without a priority array, served by bacpypes3 on loopback.

Seen in the field: a relinquish (a NULL at our priority) sent to a value object that has no priority
array, which some devices take and then serve an uninitialised present-value; and devices answering an
empty priority array with a single NULL.
"""

from __future__ import annotations

import math

import pytest
from bacnet_fixtures import connected, served

from drivers.base import NotCommandable, Quality
from sim.bacnet_server import vav_device


def _requests(server) -> int:
    return server.requests["read-property"] + server.requests["read-property-multiple"] + \
        server.requests["write-property"]


@pytest.mark.parametrize("old_revision", [False, True], ids=["property-list", "no-property-list"])
async def test_a_non_commandable_value_takes_plain_writes_and_is_never_sent_a_null(old_revision: bool) -> None:
    # A device older than protocol revision 14 has no property-list: the priority array is asked for instead.
    async with served(vav_device(), plain_objects={"zone_setpoint"}, old_revision=old_revision) as (device, server,
                                                                                                   spec):
        async with connected(spec) as driver:
            await driver.connect()
            before = _requests(server)
            result = await driver.write("zone_setpoint", 21.5)
            # Property-list (or priority-array) once, the write, the read-back of present-value.
            assert _requests(server) - before == (4 if old_revision else 3)
            assert result.priority is None and result.read_back == 21.5
            # Written without a priority: the device has no array to put it in.
            assert device.writes[-1][1:] == ("zone_setpoint", 21.5, None)
            assert device.priority_array("zone_setpoint") == [None] * 16

            before = _requests(server)
            assert (await driver.write("zone_setpoint", 22.0, priority=12)).priority is None
            assert _requests(server) - before == 2, "commandability is asked once per object"
            assert device.writes[-1][1:] == ("zone_setpoint", 22.0, None)

            writes = server.requests["write-property"]
            with pytest.raises(NotCommandable, match=r"not commandable.*nothing was sent"):
                await driver.write("zone_setpoint", None)
            with pytest.raises(NotCommandable, match="no priority array"):
                await driver.read_priority_array("zone_setpoint")
            assert server.requests["write-property"] == writes
            # The present-value the device serves is still the one written, not an uninitialised one.
            (reading,) = await driver.read(["zone_setpoint"])
            assert reading.quality is Quality.GOOD and reading.value == 22.0
            assert not await driver.is_commandable("zone_setpoint")

            # A commandable object of the same device still goes at a priority and relinquishes.
            assert await driver.is_commandable("damper_position")
            assert (await driver.write("damper_position", 40.0)).priority == 10
            assert device.priority_array("damper_position")[9] == 40.0
            assert (await driver.write("damper_position", None)).priority == 10
            assert device.priority_array("damper_position")[9] is None


async def test_the_device_really_loses_its_value_to_a_null_without_priority() -> None:
    """Why the driver refuses: the simulated device behaves like the ones seen in the field."""
    from bacpypes3.apdu import WritePropertyRequest
    from bacpypes3.primitivedata import Null

    async with served(vav_device(), plain_objects={"zone_setpoint"}) as (device, _server, spec):
        async with connected(spec) as driver:
            await driver.write("zone_setpoint", 21.5)
            plan = driver._plans["zone_setpoint"]
            async with driver._lock:
                await driver._send(WritePropertyRequest(objectIdentifier=plan.object_id,
                                                        propertyIdentifier=plan.property_id,
                                                        propertyValue=Null(()), priority=10))
            assert math.isnan(device.get("zone_setpoint"))
            (reading,) = await driver.read(["zone_setpoint"])
            assert reading.quality is Quality.BAD and "DecodeError" in (reading.error or "")


@pytest.mark.parametrize("refuse_rpm", [False, True], ids=["read-property-multiple", "read-property"])
async def test_a_priority_array_answered_with_a_single_null_is_an_empty_one(refuse_rpm: bool) -> None:
    async with served(vav_device(), null_priority_array=True, refuse_rpm=refuse_rpm) as (device, _server, spec):
        async with connected(spec) as driver:
            state = await driver.read_priority_array("damper_position")
            assert state.slots == (None,) * 16 and state.active_priority is None
            assert state.relinquish_default == device.relinquish_default("damper_position")
            result = await driver.write("damper_position", 55.0)
            assert result.priority == 10 and result.read_back == 55.0
            assert (await driver.priority_array("damper_position"))[9] == 55.0
            # The relinquish's read-back finds the array empty again, answered as a single NULL.
            released = await driver.write("damper_position", None)
            assert released.written is None and released.priority == 10
            assert (await driver.read_priority_array("damper_position")).active_priority is None
