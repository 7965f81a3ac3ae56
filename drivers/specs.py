"""What a driver needs to know about a device and its points, protocol by protocol."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PointSpec:
    id: str
    unit: str
    writable: bool = False
    min: float | None = None
    max: float | None = None
    # Raw enumerated value -> label (state points).
    states: dict[int, str] | None = None


@dataclass(frozen=True, slots=True)
class ModbusPointSpec(PointSpec):
    function: str = "holding_register"  # coil | discrete_input | holding_register | input_register
    register: int = 0
    data_type: str = "uint16"  # bool, (u)int16/32/64, float32/64
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = None


@dataclass(frozen=True, slots=True)
class BacnetPointSpec(PointSpec):
    object_type: str = "analog-value"
    instance: int = 0
    property: str = "present-value"
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class OpcuaPointSpec(PointSpec):
    node_id: str = ""  # "nsu=<namespace uri>;s=..." or "ns=0;i=..."
    data_type: str = "Double"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    id: str
    timeout_s: float = 2.0
    retries: int = 1
    poll_interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ModbusDeviceSpec(DeviceSpec):
    host: str = "127.0.0.1"
    port: int = 502
    unit_id: int = 1
    max_gap_registers: int = 8
    points: tuple[ModbusPointSpec, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class BacnetDeviceSpec(DeviceSpec):
    address: str = "127.0.0.1:47808"
    device_instance: int = 0
    default_priority: int = 10
    # Where the driver talks from. No address: loopback for a loopback device, else every interface.
    # Port 0: a free port of the driver's own; a fixed port is one socket shared by the drivers using it.
    local_address: str | None = None
    local_port: int = 0
    points: tuple[BacnetPointSpec, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class OpcuaSecuritySpec:
    policy: str = "None"  # None | Basic256Sha256
    mode: str = "None"  # None | Sign | SignAndEncrypt
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None


@dataclass(frozen=True, slots=True)
class OpcuaDeviceSpec(DeviceSpec):
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    security: OpcuaSecuritySpec = field(default_factory=OpcuaSecuritySpec)
    subscription: bool = False
    points: tuple[OpcuaPointSpec, ...] = field(default_factory=tuple)
