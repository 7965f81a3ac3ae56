"""A simulated device served over BACnet/IP (bacpypes3) on loopback.

Each point of the device's `BacnetDeviceSpec` becomes an analog/binary/multi-state input/output/value (or
accumulator) object. Present values are read live from the `SimDevice`, so the physics shows through;
writes go to `SimDevice.write(point_id, value, priority)`, which holds the priority array and the
relinquish default that the objects' priority-array and relinquish-default properties report. The device's
`fault` is honoured on every request: offline/silent drop everything, slow delays every answer, exception
answers with a BACnet error, garbage answers present-value reads with a value of the wrong type.

Outputs and writable values are commandable unless named in `plain_objects`: those have no priority array
and take plain writes, and, like some real devices, take a NULL too and are left with an uninitialised
(NaN) present-value. `null_priority_array` answers an empty priority array with a single NULL, as some
devices do; `old_revision` has no property-list, as devices older than protocol revision 14.

Run it in another process with ``python -m sim.bacnet_server --profile ahu --instance 1001`` (or ``--site
DIR --device ID``): it prints one JSON line with its address once it serves, and stops on SIGTERM/SIGINT or
when the pipe on its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import stat
import sys
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bacpypes3.apdu import AbortPDU, AbortReason, ComplexAckPDU, ComplexAckSequence
from bacpypes3.app import Application
from bacpypes3.basetypes import (
    BinaryPV,
    EngineeringUnits,
    EventState,
    OptionalUnsigned,
    PriorityArray,
    PriorityValue,
    Segmentation,
)
from bacpypes3.errors import ExecutionError, PropertyError, UnrecognizedService
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.object import Object as LocalObject
from bacpypes3.object import (
    AccumulatorObject,
    AnalogInputObject,
    AnalogOutputObject,
    AnalogValueObject,
    BinaryInputObject,
    BinaryOutputObject,
    BinaryValueObject,
    MultiStateInputObject,
    MultiStateOutputObject,
    MultiStateValueObject,
)
from bacpypes3.pdu import PDU
from bacpypes3.primitivedata import CharacterString, Null, ObjectIdentifier, Real, Unsigned

from drivers.bacnet_stack import Stack, build_stack, split_address
from drivers.base import Value
from drivers.specs import BacnetDeviceSpec, BacnetPointSpec
from sim.core import PRIORITY_LEVELS, Clock, FaultKind, SimDevice, WallClock

# gridctl unit -> BACnet engineering units.
ENGINEERING_UNITS: dict[str, str] = {
    "W": "watts",
    "kW": "kilowatts",
    "MW": "megawatts",
    "Wh": "wattHours",
    "kWh": "kilowattHours",
    "MWh": "megawattHours",
    "°C": "degreesCelsius",
    "K": "degreesKelvin",
    "%": "percent",
    "A": "amperes",
    "V": "volts",
    "Hz": "hertz",
    "kvar": "kilovoltAmperesReactive",
    "kVA": "kilovoltAmperes",
    "lx": "luxes",
    "W/m2": "wattsPerSquareMeter",
    "ppm": "partsPerMillion",
    "m3/h": "cubicMetersPerHour",
    "Pa": "pascals",
    "bar": "bars",
    "s": "seconds",
    "h": "hours",
}

_WILDCARD_DEVICE = ObjectIdentifier(("device", 4194303))
_COMMANDABLE_TYPES = {"analog-output", "binary-output", "multi-state-output"}
_VALUE_TYPES = {"analog-value", "binary-value", "multi-state-value"}


def _is_commandable(point: BacnetPointSpec) -> bool:
    return point.object_type in _COMMANDABLE_TYPES or (point.object_type in _VALUE_TYPES and point.writable)


def _kind(object_type: str) -> str:
    if object_type.startswith("analog-"):
        return "analog"
    if object_type.startswith("binary-"):
        return "binary"
    if object_type.startswith("multi-state-"):
        return "multistate"
    if object_type == "accumulator":
        return "accumulator"
    raise ValueError(f"unsupported BACnet object type {object_type!r}")


def _encode(kind: str, value: Value) -> Any:
    if kind == "analog":
        return Real(float(value))
    if kind == "binary":
        return BinaryPV("active" if bool(value) else "inactive")
    return Unsigned(int(value))


def _priority_value(kind: str, value: Value | None) -> PriorityValue:
    if value is None:
        return PriorityValue(null=())
    if kind == "analog":
        return PriorityValue(real=Real(float(value)))
    if kind == "binary":
        return PriorityValue(enumerated=_encode(kind, value))
    return PriorityValue(unsigned=Unsigned(int(value)))


class _SimPoint:
    """Mixin over a bacpypes3 object: present value, priority array and relinquish default live in the
    SimDevice, not in the object."""

    _sim: SimDevice
    _point: BacnetPointSpec
    _point_kind: str
    _commandable: bool
    _server: Any  # the BacnetSimServer serving it (bacpypes3 evaluates these hints at class creation)
    _live = frozenset({"presentValue", "priorityArray", "relinquishDefault", "currentCommandPriority"})

    def _attr_name(self, attr: int | str) -> str:
        if isinstance(attr, int):
            return self._property_identifier_class(attr).attr  # type: ignore[attr-defined]
        return attr

    async def read_property(self, attr: int | str, index: int | None = None) -> Any:
        name = self._attr_name(attr)
        if name == "propertyList" and self._server.old_revision:
            raise PropertyError("unknownProperty")
        if name not in self._live or (name != "presentValue" and not self._commandable):
            return await super().read_property(attr, index)  # type: ignore[misc]
        point_id = self._point.id
        if name == "presentValue":
            fault = self._sim.fault
            if fault is not None and fault.kind is FaultKind.GARBAGE:
                return CharacterString("\ufffdgarbage")
            return _encode(self._point_kind, self._sim.get(point_id))
        if name == "relinquishDefault":
            return _encode(self._point_kind, self._sim.relinquish_default(point_id))
        if name == "currentCommandPriority":
            active = self._sim.active_priority(point_id)
            return OptionalUnsigned(null=()) if active is None else OptionalUnsigned(unsigned=active)
        slots = self._sim.priority_array(point_id)
        if index is None and self._server.null_priority_array and all(slot is None for slot in slots):
            return Null(())
        if index is None:
            return PriorityArray([_priority_value(self._point_kind, slot) for slot in slots])
        if index == 0:
            return Unsigned(PRIORITY_LEVELS)
        if not 1 <= index <= PRIORITY_LEVELS:
            raise PropertyError("invalidArrayIndex")
        return _priority_value(self._point_kind, slots[index - 1])

    async def write_property(self, attr: int | str, value: Any, index: int | None = None,
                             priority: int | None = None) -> None:
        name = self._attr_name(attr)
        # An input's present value follows the field, never a write (we have no out-of-service mode).
        is_input = self._point.object_type.endswith("-input") or self._point.object_type == "accumulator"
        if name not in ("presentValue", "relinquishDefault") or not self._point.writable or is_input:
            raise PropertyError("writeAccessDenied")
        decoded = None if isinstance(value, Null) else self._decode(value)
        if decoded is None and name == "presentValue" and not self._commandable and self._point_kind == "analog":
            # What some devices do with a NULL on an object that has no priority array.
            self._sim.set(self._point.id, math.nan)
            return
        if decoded is None and (name != "presentValue" or not self._commandable):
            raise PropertyError("invalidDataType")
        if name == "relinquishDefault":
            assert decoded is not None
            self._sim.set_relinquish_default(self._point.id, decoded)
            return
        if not self._commandable:
            priority = None  # a priority means nothing to an object without a priority array
        elif priority is None:
            priority = PRIORITY_LEVELS  # a write without priority lands at 16 (clause 19.2.1)
        try:
            self._sim.write(self._point.id, decoded, priority)
        except PermissionError as exc:
            raise PropertyError("writeAccessDenied") from exc
        except ValueError as exc:
            raise PropertyError("valueOutOfRange") from exc

    def _decode(self, value: Any) -> Value:
        point = self._point
        if self._point_kind == "binary":
            return int(value) == 1  # BinaryPV active
        if self._point_kind == "analog":
            number = float(value)
            if (point.min is not None and number < point.min) or (point.max is not None and number > point.max):
                raise PropertyError("valueOutOfRange")
            return number
        state = int(value)
        allowed = point.states.keys() if point.states else range(1, _number_of_states(point) + 1)
        if state not in allowed:
            raise PropertyError("valueOutOfRange")
        return state


def _number_of_states(point: BacnetPointSpec) -> int:
    return max(point.states) if point.states else 2


_BASE_CLASSES: dict[str, type] = {
    "analog-input": AnalogInputObject,
    "analog-output": AnalogOutputObject,
    "analog-value": AnalogValueObject,
    "binary-input": BinaryInputObject,
    "binary-output": BinaryOutputObject,
    "binary-value": BinaryValueObject,
    "multi-state-input": MultiStateInputObject,
    "multi-state-output": MultiStateOutputObject,
    "multi-state-value": MultiStateValueObject,
    "accumulator": AccumulatorObject,
}
_SIM_CLASSES: dict[str, type] = {
    object_type: type(f"Sim{base.__name__}", (_SimPoint, LocalObject, base), {"_vendor_id": 999})
    for object_type, base in _BASE_CLASSES.items()
}


def _make_object(server: BacnetSimServer, point: BacnetPointSpec) -> Any:
    sim = server.device
    kind = _kind(point.object_type)
    properties: dict[str, Any] = {
        "objectIdentifier": (point.object_type, point.instance),
        "objectName": point.id,
        "eventState": EventState.normal,
        "outOfService": False,
    }
    commandable = _is_commandable(point) and point.id not in server.plain_objects
    if kind in ("analog", "accumulator"):
        properties["units"] = EngineeringUnits(ENGINEERING_UNITS.get(point.unit, "noUnits"))
    if kind == "analog" and point.min is not None:
        properties["minPresValue"] = point.min
    if kind == "analog" and point.max is not None:
        properties["maxPresValue"] = point.max
    if kind == "multistate":
        count = _number_of_states(point)
        properties["numberOfStates"] = count
        if point.states:
            properties["stateText"] = [point.states.get(i, f"state {i}") for i in range(1, count + 1)]
    if point.object_type in ("binary-input", "binary-output"):
        properties["polarity"] = "normal"
    if kind == "accumulator":
        properties["scale"] = {"floatScale": 1.0}
        properties["maxPresValue"] = 2**32 - 1
    current = sim.get(point.id)
    properties["presentValue"] = _encode(kind, current)
    if commandable:
        # Placeholders so the properties appear in property-list; reads come from the SimDevice.
        properties["priorityArray"] = PriorityArray([PriorityValue(null=()) for _ in range(PRIORITY_LEVELS)])
        properties["relinquishDefault"] = _encode(kind, current)
        properties["currentCommandPriority"] = OptionalUnsigned(null=())
    obj = _SIM_CLASSES[point.object_type](**properties)
    obj._sim = sim
    obj._point = point
    obj._point_kind = kind
    obj._commandable = commandable
    obj._server = server
    return obj


class _SimApplication(Application):
    """The device's application: refuses ReadPropertyMultiple on demand, answers errors under an
    `exception` fault and aborts answers longer than the device's max APDU, as a device without
    segmentation does."""

    server: BacnetSimServer

    def _check_fault(self) -> None:
        fault = self.server.device.fault
        if fault is not None and fault.kind is FaultKind.EXCEPTION:
            raise ExecutionError(errorClass="device", errorCode="operationalProblem")

    async def do_ReadPropertyRequest(self, apdu: Any) -> None:
        self.server.requests["read-property"] += 1
        self._check_fault()
        if apdu.objectIdentifier == _WILDCARD_DEVICE and self.device_object is not None:
            # "The device that receives this": bacpypes3 0.0.108 means to answer it but compares the
            # identifier with a tuple of strings, which never matches.
            apdu.objectIdentifier = self.device_object.objectIdentifier
        await super().do_ReadPropertyRequest(apdu)

    async def do_ReadPropertyMultipleRequest(self, apdu: Any) -> None:
        self.server.requests["read-property-multiple"] += 1
        if self.server.refuse_rpm:
            raise UnrecognizedService()
        self._check_fault()
        await super().do_ReadPropertyMultipleRequest(apdu)

    async def do_WritePropertyRequest(self, apdu: Any) -> None:
        self.server.requests["write-property"] += 1
        self._check_fault()
        await super().do_WritePropertyRequest(apdu)

    async def response(self, apdu: Any) -> None:
        max_apdu = self.server.max_apdu
        if max_apdu < 1476 and isinstance(apdu, ComplexAckPDU | ComplexAckSequence):
            if len(apdu.encode().pduData) > max_apdu:
                self.server.requests["aborted-too-long"] += 1
                abort = AbortPDU(True, apdu.apduInvokeID, AbortReason.segmentationNotSupported)
                abort.pduDestination = apdu.pduDestination
                apdu = abort
        await super().response(apdu)


class BacnetSimServer:
    """Serves one SimDevice as a BACnet/IP device on loopback; `address` is "ip:port" once started.

    `port` 0 picks a free port; the port is kept across stop()/start() so a restarted device comes back
    where it was. A `host` written "ip/prefix" also hears local broadcasts on that network (devices then
    share one fixed port on distinct loopback addresses, like devices on a LAN). `bbmd=True` also makes it
    a BBMD accepting foreign-device registrations; `foreign` ("ip:port" of a BBMD) registers it as a foreign
    device there. `plain_objects` are point ids of value objects served without a priority array.
    """

    def __init__(self, device: SimDevice, *, host: str = "127.0.0.1", port: int = 0, bbmd: bool = False,
                 foreign: str | None = None, ttl_s: int = 30, refuse_rpm: bool = False, max_apdu: int = 1476,
                 vendor_identifier: int = 999, plain_objects: Collection[str] = (),
                 null_priority_array: bool = False, old_revision: bool = False) -> None:
        if not isinstance(device.spec, BacnetDeviceSpec):
            raise TypeError(f"{device.id} is not a BACnet device")
        if bbmd and foreign:
            raise ValueError("a device is either a BBMD or a foreign device, not both")
        self.device = device
        self.spec: BacnetDeviceSpec = device.spec
        # "ip/prefix" serves on a network with broadcasts (a fixed port shared with the other devices).
        self.interface = host
        self.host = host.partition("/")[0]
        self.port = port
        self.bbmd = bbmd
        self.foreign = foreign
        self.ttl_s = ttl_s
        self.refuse_rpm = refuse_rpm
        self.max_apdu = max_apdu
        self.vendor_identifier = vendor_identifier
        self.plain_objects = frozenset(plain_objects)
        outputs = [p.id for p in self.spec.points if p.id in self.plain_objects and p.object_type in _COMMANDABLE_TYPES]
        if outputs:
            raise ValueError(f"outputs are always commandable in BACnet: {', '.join(outputs)}")
        self.null_priority_array = null_priority_array
        self.old_revision = old_revision
        self.requests: dict[str, int] = dict.fromkeys(
            ("read-property", "read-property-multiple", "write-property", "aborted-too-long"), 0)
        # Every datagram that reached the device, answered or not (tests wait on it), and where from.
        self.datagrams_received = 0
        self.sources: set[str] = set()
        self._stack: Stack | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._stack is not None

    async def start(self) -> None:
        if self._stack is not None:
            return
        device_object = DeviceObject(
            objectIdentifier=("device", self.spec.device_instance),
            objectName=self.spec.id,
            vendorIdentifier=self.vendor_identifier,
            maxApduLengthAccepted=self.max_apdu,
            segmentationSupported=Segmentation.noSegmentation,
        )
        objects = [device_object, *(_make_object(self, point) for point in self.spec.points)]
        mode = "bbmd" if self.bbmd else "foreign" if self.foreign else "normal"
        stack = build_stack(objects, host=self.interface, port=self.port, mode=mode, bbmd_address=self.foreign,
                            ttl_s=self.ttl_s, app_class=_SimApplication, gate=self._gate)
        stack.app.server = self  # type: ignore[attr-defined]
        try:
            await stack.wait_bound()
        except OSError:
            stack.close()
            raise
        self._stack = stack
        self.port = stack.address.addrTuple[1]
        if self.foreign and not await stack.wait_registered(timeout_s=5.0):
            await self.stop()
            raise ConnectionError(f"BBMD {self.foreign} did not accept the registration of {self.spec.id}")

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
            # Let the transport finish closing before the port is reused.
            await asyncio.sleep(0)

    async def __aenter__(self) -> BacnetSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _gate(self, pdu: PDU) -> bool:
        self.datagrams_received += 1
        self.sources.add(str(pdu.pduSource))
        fault = self.device.fault
        if fault is None:
            return True
        if fault.kind in (FaultKind.OFFLINE, FaultKind.SILENT):
            return False
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
        return True


# --------------------------------------------------------------------------- demonstration devices


def _ai(point_id: str, instance: int, unit: str, **extra: Any) -> BacnetPointSpec:
    return BacnetPointSpec(id=point_id, unit=unit, object_type="analog-input", instance=instance, **extra)


def ahu_device(device_id: str = "ahu-1", instance: int = 1001, address: str = "127.0.0.1:47808") -> BacnetDeviceSpec:
    """An air handler: temperatures, supply setpoint, fan command/status/speed, mode, power and energy."""
    points = (
        _ai("supply_air_temperature", 1, "°C"),
        _ai("return_air_temperature", 2, "°C"),
        _ai("outdoor_air_temperature", 3, "°C"),
        _ai("electrical_power", 4, "kW"),
        BacnetPointSpec(id="supply_air_setpoint", unit="°C", writable=True, min=12.0, max=30.0,
                        object_type="analog-value", instance=1),
        BacnetPointSpec(id="fan_speed", unit="%", writable=True, min=0.0, max=100.0,
                        object_type="analog-output", instance=1),
        BacnetPointSpec(id="outdoor_air_damper", unit="%", writable=True, min=0.0, max=100.0,
                        object_type="analog-output", instance=2),
        BacnetPointSpec(id="fan_command", unit="", writable=True, object_type="binary-output", instance=1),
        BacnetPointSpec(id="fan_status", unit="", object_type="binary-input", instance=1),
        BacnetPointSpec(id="filter_alarm", unit="", object_type="binary-input", instance=2),
        BacnetPointSpec(id="mode", unit="", writable=True, object_type="multi-state-value", instance=1,
                        states={1: "off", 2: "heat", 3: "cool", 4: "ventilate"}),
        BacnetPointSpec(id="energy", unit="kWh", object_type="accumulator", instance=1),
    )
    return BacnetDeviceSpec(id=device_id, address=address, device_instance=instance, points=points)


def vav_device(device_id: str = "vav-1", instance: int = 2001, address: str = "127.0.0.1:47808") -> BacnetDeviceSpec:
    """A VAV zone box: zone temperature and setpoint, damper, airflow, occupancy."""
    points = (
        _ai("zone_temperature", 1, "°C"),
        _ai("airflow", 2, "m3/h"),
        _ai("co2", 3, "ppm"),
        BacnetPointSpec(id="zone_setpoint", unit="°C", writable=True, min=16.0, max=28.0,
                        object_type="analog-value", instance=1),
        BacnetPointSpec(id="damper_position", unit="%", writable=True, min=0.0, max=100.0,
                        object_type="analog-output", instance=1),
        BacnetPointSpec(id="occupancy", unit="", object_type="binary-input", instance=1),
        BacnetPointSpec(id="occupancy_mode", unit="", writable=True, object_type="multi-state-value", instance=1,
                        states={1: "unoccupied", 2: "occupied", 3: "standby"}),
        BacnetPointSpec(id="reheat_enable", unit="", writable=True, object_type="binary-value", instance=1),
    )
    return BacnetDeviceSpec(id=device_id, address=address, device_instance=instance, points=points)


def lighting_device(device_id: str = "lighting-1", instance: int = 3001, address: str = "127.0.0.1:47808",
                    zones: int = 4) -> BacnetDeviceSpec:
    """A lighting controller: per zone a dimming level, a switch, occupancy and illuminance; a scene."""
    points: list[BacnetPointSpec] = []
    for zone in range(1, zones + 1):
        points += [
            BacnetPointSpec(id=f"zone{zone}_level", unit="%", writable=True, min=0.0, max=100.0,
                            object_type="analog-output", instance=zone),
            BacnetPointSpec(id=f"zone{zone}_switch", unit="", writable=True, object_type="binary-output",
                            instance=zone),
            BacnetPointSpec(id=f"zone{zone}_occupancy", unit="", object_type="binary-input", instance=zone),
            _ai(f"zone{zone}_illuminance", zone, "lx"),
        ]
    points += [
        _ai("lighting_power", 100, "kW"),
        BacnetPointSpec(id="scene", unit="", writable=True, object_type="multi-state-output", instance=1,
                        states={1: "off", 2: "night", 3: "eco", 4: "full"}),
    ]
    return BacnetDeviceSpec(id=device_id, address=address, device_instance=instance, points=tuple(points))


def bench_device(device_id: str = "bench-1", instance: int = 9001, address: str = "127.0.0.1:47808",
                 objects: int = 200) -> BacnetDeviceSpec:
    """A device with many analog inputs, for throughput measurements."""
    points = tuple(_ai(f"ai{i}", i, "°C") for i in range(1, objects + 1))
    return BacnetDeviceSpec(id=device_id, address=address, device_instance=instance, points=points)


PROFILES = {"ahu": ahu_device, "vav": vav_device, "lighting": lighting_device, "bench": bench_device}


def sim_device(spec: BacnetDeviceSpec, clock: Clock | None = None) -> SimDevice:
    """A SimDevice for `spec` with plausible non-zero values, so reads show real data."""
    device = SimDevice(spec, clock or WallClock())
    for index, point in enumerate(spec.points):
        kind = _kind(point.object_type)
        if kind == "analog":
            low = point.min if point.min is not None else 0.0
            high = point.max if point.max is not None else low + 40.0
            device.set(point.id, round(low + (high - low) * ((index * 37) % 100) / 100 + 0.5, 1))
        elif kind == "binary":
            device.set(point.id, index % 2 == 0)
        elif kind == "multistate":
            device.set(point.id, min(point.states) if point.states else 1)
        else:
            device.set(point.id, 1000 + index)
    return device


# --------------------------------------------------------------------------- command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sim.bacnet_server", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", choices=sorted(PROFILES), help="a built-in demonstration device")
    source.add_argument("--site", type=Path, help="a site folder (with --device): serve that device")
    parser.add_argument("--device", help="device id (site device, or the profile device's id)")
    parser.add_argument("--instance", type=int, help="device instance (profiles)")
    parser.add_argument("--objects", type=int, help="number of analog inputs (bench profile)")
    parser.add_argument("--address", default="127.0.0.1:0",
                        help="ip[/prefix]:port to serve on; port 0 picks a free one; a prefix adds broadcasts")
    parser.add_argument("--bbmd", action="store_true", help="also act as a BBMD")
    parser.add_argument("--foreign", metavar="IP:PORT", help="register as a foreign device with this BBMD")
    parser.add_argument("--ttl", type=int, default=30, help="foreign-device registration time-to-live, s")
    parser.add_argument("--refuse-rpm", action="store_true", help="reject ReadPropertyMultiple")
    parser.add_argument("--max-apdu", type=int, default=1476, help="largest APDU the device sends")
    args = parser.parse_args(argv)
    if args.site is not None and not args.device:
        parser.error("--site needs --device")
    return args


def _spec_from_args(args: argparse.Namespace) -> BacnetDeviceSpec:
    if args.site is not None:
        from gridctl.config import load_site
        from gridctl.fieldbus import device_spec

        site_dir = args.site if args.site.is_dir() else args.site.parent
        site = load_site(args.site)
        for device in site.devices:
            if device.id == args.device:
                spec = device_spec(device, site_dir)
                if not isinstance(spec, BacnetDeviceSpec):
                    raise SystemExit(f"{args.device} is not a BACnet device")
                return spec
        raise SystemExit(f"no device {args.device!r} in {args.site}")
    kwargs: dict[str, Any] = {}
    if args.device:
        kwargs["device_id"] = args.device
    if args.instance is not None:
        kwargs["instance"] = args.instance
    if args.objects is not None:
        if args.profile != "bench":
            raise SystemExit("--objects is for the bench profile")
        kwargs["objects"] = args.objects
    return PROFILES[args.profile](**kwargs)


async def _serve(args: argparse.Namespace) -> None:
    host, port = split_address(args.address, default_port=0)
    spec = _spec_from_args(args)
    spec = replace(spec, address=f"{host.partition('/')[0]}:{port}")
    server = BacnetSimServer(sim_device(spec), host=host, port=port, bbmd=args.bbmd, foreign=args.foreign,
                             ttl_s=args.ttl, refuse_rpm=args.refuse_rpm, max_apdu=args.max_apdu)
    await server.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        # Started with a pipe on stdin: a parent that dies closes it, and we stop rather than linger.
        loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    print(json.dumps({"device_id": spec.id, "device_instance": spec.device_instance, "address": server.address}),
          flush=True)
    try:
        await done.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
