"""Typed access from the physics to one point of a simulated device, in gridctl's internal units."""

from __future__ import annotations

from drivers.base import Value
from drivers.specs import PointSpec
from gridctl.config.units import UNITS
from sim.core import SimDevice


def is_boolean(point: PointSpec) -> bool:
    return (getattr(point, "data_type", "") in ("bool", "Boolean")
            or getattr(point, "object_type", "").startswith("binary-")
            or getattr(point, "function", "") in ("coil", "discrete_input"))


def is_integer(point: PointSpec) -> bool:
    return bool(point.states) or getattr(point, "data_type", "") in (
        "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "SByte", "Byte")


class PointRef:
    """One point of one device. Values cross in internal units (kW, kWh, °C, ...), converted to the
    point's own unit (W, Wh, ...) on the device."""

    def __init__(self, device: SimDevice, point_id: str) -> None:
        self.device = device
        self.point_id = point_id
        self.spec = device.points[point_id]
        self.factor = UNITS.get(self.spec.unit, (None, 1.0))[1]
        self.boolean = is_boolean(self.spec)
        self.integer = is_integer(self.spec)
        self.written = False
        if self.spec.writable:
            device.on_write(self._on_write)

    @property
    def address(self) -> str:
        return f"{self.device.id}/{self.point_id}"

    def _on_write(self, device: SimDevice, point_id: str, value: Value | None, priority: int | None) -> None:
        if point_id == self.point_id:
            self.written = True

    def read(self) -> float:
        value = self.device.get(self.point_id)
        if isinstance(value, str):
            return float(value)
        return float(value) * self.factor

    def read_bool(self) -> bool:
        return bool(self.device.get(self.point_id))

    def _raw(self, value: float | bool) -> Value:
        if self.boolean:
            return bool(value)
        if self.integer:
            return round(float(value) / self.factor)
        return float(value) / self.factor

    def sensed(self, value: float) -> float:
        """What the point's instrument reads when the true value is `value` (the value itself without one)."""
        sensor = self.device.sensors.get(self.point_id)
        return sensor.read(value, self.device.clock.now()) if sensor is not None else value

    def set(self, value: float | bool) -> None:
        """A measurement the device reports, through its instrument."""
        if not isinstance(value, bool) and self.point_id in self.device.sensors:
            value = self.sensed(value)
        self.device.set(self.point_id, self._raw(value))

    def local_default(self, value: float | bool) -> None:
        """What the device's own logic commands when nobody else does: a BACnet point's relinquish
        default; for other protocols, the value until the first write over the wire."""
        raw = self._raw(value)
        if self.device.protocol == "bacnet" and self.spec.writable:
            if self.device.relinquish_default(self.point_id) != raw:
                self.device.set_relinquish_default(self.point_id, raw)
        elif not self.written:
            self.device.set(self.point_id, raw)

    def clamp(self, value: float) -> float:
        """A value inside the point's limits, in internal units."""
        low = self.spec.min * self.factor if self.spec.min is not None else None
        high = self.spec.max * self.factor if self.spec.max is not None else None
        if low is not None:
            value = max(value, low)
        if high is not None:
            value = min(value, high)
        return value


def optional(device: SimDevice | None, point_id: str) -> PointRef | None:
    """The point if the device has it (device maps differ in what they expose)."""
    if device is None or point_id not in device.points:
        return None
    return PointRef(device, point_id)
