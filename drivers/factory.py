"""Pick the protocol adapter for a device spec, and move a spec's ports (to reach a shifted simulator)."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit, urlunsplit

from drivers.base import Driver
from drivers.specs import BacnetDeviceSpec, DeviceSpec, ModbusDeviceSpec, OpcuaDeviceSpec


def make_driver(spec: DeviceSpec) -> Driver:
    """The production driver of the spec's protocol (imported lazily: each pulls in its own stack)."""
    if isinstance(spec, ModbusDeviceSpec):
        from drivers.modbus import ModbusDriver

        return ModbusDriver(spec)
    if isinstance(spec, BacnetDeviceSpec):
        from drivers.bacnet import BacnetDriver

        return BacnetDriver(spec)
    if isinstance(spec, OpcuaDeviceSpec):
        from drivers.opcua import OpcuaDriver

        return OpcuaDriver(spec)
    raise TypeError(f"no driver for {type(spec).__name__}")


def offset_ports(spec: DeviceSpec, offset: int) -> DeviceSpec:
    """The same device `offset` ports further: Modbus port, BACnet UDP port, OPC-UA endpoint port."""
    if offset == 0:
        return spec
    if isinstance(spec, ModbusDeviceSpec):
        return dataclasses.replace(spec, port=_checked(spec.port + offset))
    if isinstance(spec, BacnetDeviceSpec):
        host, _, port = spec.address.rpartition(":")
        if not host:
            host, port = spec.address, "47808"
        return dataclasses.replace(spec, address=f"{host}:{_checked(int(port) + offset)}")
    if isinstance(spec, OpcuaDeviceSpec):
        parts = urlsplit(spec.endpoint)
        port = _checked((parts.port or 4840) + offset)
        netloc = f"{parts.hostname}:{port}"
        return dataclasses.replace(spec, endpoint=urlunsplit(parts._replace(netloc=netloc)))
    raise TypeError(f"no ports to move in {type(spec).__name__}")


def _checked(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1..65535")
    return port
