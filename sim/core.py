"""Simulated device state shared by the protocol servers and the physics: clock, values, faults.

A `SimDevice` holds the engineering value of every point of one device. Protocol servers encode
and decode those values on the wire; the physics reads the commanded values and updates the
measurements. Time only comes from a `Clock`, so simulations run faster than real time and tests
never depend on sleeping.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from drivers.base import Value
from drivers.specs import BacnetDeviceSpec, DeviceSpec, ModbusDeviceSpec, OpcuaDeviceSpec, PointSpec

PRIORITY_LEVELS = 16
# Writes a device remembers (newest last): enough to inspect, bounded so a simulated month does not grow.
WRITE_LOG_SIZE = 256


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimClock:
    """Simulated time: starts at `start` and moves only when told to (or `speed` × wall time)."""

    def __init__(self, start: datetime, speed: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("simulation start must be timezone-aware")
        self._start = start.astimezone(UTC)
        self._offset = timedelta(0)
        self._speed = speed
        self._wall_origin = datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            if self._speed is None:
                return self._start + self._offset
            return self._start + (datetime.now(UTC) - self._wall_origin) * self._speed

    @property
    def speed(self) -> float | None:
        """Simulated seconds per wall-clock second (None: standing still)."""
        return self._speed

    def set_speed(self, speed: float | None) -> None:
        """From now on follow wall time × `speed` (None: stand still until advanced by hand)."""
        with self._lock:
            if self._speed is None:
                current = self._start + self._offset
            else:
                current = self._start + (datetime.now(UTC) - self._wall_origin) * self._speed
            self._start, self._offset = current, timedelta(0)
            self._wall_origin = datetime.now(UTC)
            self._speed = speed

    def advance(self, step: timedelta) -> datetime:
        if self._speed is not None:
            raise RuntimeError("an accelerated clock follows wall time; it cannot be advanced by hand")
        with self._lock:
            self._offset += step
            return self._start + self._offset


class FaultKind(StrEnum):
    OFFLINE = "offline"  # not listening / connections dropped
    SLOW = "slow"  # answers after `delay_s`
    SILENT = "silent"  # accepts requests, never answers
    EXCEPTION = "exception"  # answers with a protocol exception / bad status
    GARBAGE = "garbage"  # answers with a malformed payload


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    delay_s: float = 0.0


WriteListener = Callable[["SimDevice", str, Value | None, int | None], None]


@dataclass
class DeviceWatchdog:
    """The device's own supervision of its supervisor: a heartbeat point that must be written within
    `timeout_s`. Once the first heartbeat arrived, a lapse makes the device let go of what the supervisor
    commanded: a BACnet device releases the supervisor's `priorities` slots; a device without a priority
    array (OPC-UA) puts each point written over the wire back to the value it had before."""

    point_id: str
    timeout_s: float
    priorities: frozenset[int] = frozenset()
    beat_at: datetime | None = None
    # Times the device let go (tests and drills look at it).
    trips: int = 0

    def expired(self, now: datetime) -> bool:
        return self.beat_at is not None and now >= self.beat_at + timedelta(seconds=self.timeout_s)


@dataclass
class _Commanded:
    """A commandable point's priority array (BACnet semantics; other protocols write directly)."""

    slots: list[Value | None] = field(default_factory=lambda: [None] * PRIORITY_LEVELS)
    relinquish_default: Value | None = None


class SimDevice:
    """One simulated device: its spec, the value of each point, its commanded priority arrays."""

    def __init__(self, spec: DeviceSpec, clock: Clock, initial: dict[str, Value] | None = None) -> None:
        self.spec = spec
        self.clock = clock
        self.points: dict[str, PointSpec] = {p.id: p for p in getattr(spec, "points", ())}
        self.values: dict[str, Value] = {pid: _zero(p) for pid, p in self.points.items()}
        if initial:
            for pid, value in initial.items():
                self.set(pid, value)
        self.fault: Fault | None = None
        self.writes: deque[tuple[datetime, str, Value | None, int | None]] = deque(maxlen=WRITE_LOG_SIZE)
        self._commanded: dict[str, _Commanded] = {}
        self._listeners: list[WriteListener] = []
        self.watchdog: DeviceWatchdog | None = None
        # Without a priority array: the value each point had before the supervisor first wrote it.
        self._local: dict[str, Value] = {}
        # The instrument behind each measurement point, when the physics gives it one (sim.physics.measurement).
        self.sensors: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def protocol(self) -> str:
        if isinstance(self.spec, ModbusDeviceSpec):
            return "modbus"
        if isinstance(self.spec, BacnetDeviceSpec):
            return "bacnet"
        if isinstance(self.spec, OpcuaDeviceSpec):
            return "opcua"
        raise TypeError(type(self.spec).__name__)

    def arm_watchdog(self, point_id: str, timeout_s: float, priorities: frozenset[int] = frozenset()) -> None:
        """Supervise the supervisor: see `DeviceWatchdog`."""
        if point_id not in self.points:
            raise KeyError(f"{self.id}/{point_id}")
        self.watchdog = DeviceWatchdog(point_id, timeout_s, priorities)

    def get(self, point_id: str) -> Value:
        if self.watchdog is not None:
            self._watch()
        return self.values[point_id]

    def set(self, point_id: str, value: Value) -> None:
        """Set a measured value (the physics does this); not a write, so no listener fires."""
        if point_id not in self.points:
            raise KeyError(f"{self.id}/{point_id}")
        self.values[point_id] = value

    def write(self, point_id: str, value: Value | None, priority: int | None = None) -> None:
        """A write received over the wire. With a priority, it lands in the point's priority array."""
        spec = self.points.get(point_id)
        if spec is None:
            raise KeyError(f"{self.id}/{point_id}")
        if not spec.writable:
            raise PermissionError(f"{self.id}/{point_id} is read-only")
        if priority is not None:
            # A plain int: the protocol stack's own integer type (bacpypes3's Integer) is several times larger
            # and would be kept in the write log.
            priority = int(priority)
        watchdog = self.watchdog
        if watchdog is not None:
            self._watch()
            if point_id == watchdog.point_id and value is not None:
                watchdog.beat_at = self.clock.now()
        if priority is None:
            if value is None:
                raise ValueError("relinquish needs a priority")
            if watchdog is not None and point_id != watchdog.point_id:
                self._local.setdefault(point_id, self.values[point_id])
            self.values[point_id] = value
        else:
            if not 1 <= priority <= PRIORITY_LEVELS:
                raise ValueError(f"priority {priority} outside 1..16")
            commanded = self._commanded.setdefault(point_id, _Commanded(relinquish_default=self.values[point_id]))
            commanded.slots[priority - 1] = value
            self.values[point_id] = self._effective(commanded)
        self.writes.append((self.clock.now(), point_id, value, priority))
        for listener in list(self._listeners):
            listener(self, point_id, value, priority)

    def priority_array(self, point_id: str) -> list[Value | None]:
        if self.watchdog is not None:
            self._watch()
        commanded = self._commanded.get(point_id)
        return list(commanded.slots) if commanded else [None] * PRIORITY_LEVELS

    def relinquish_default(self, point_id: str) -> Value:
        commanded = self._commanded.get(point_id)
        if commanded is not None and commanded.relinquish_default is not None:
            return commanded.relinquish_default
        return self.values[point_id]

    def set_relinquish_default(self, point_id: str, value: Value) -> None:
        commanded = self._commanded.setdefault(point_id, _Commanded())
        commanded.relinquish_default = value
        self.values[point_id] = self._effective(commanded)

    def active_priority(self, point_id: str) -> int | None:
        if self.watchdog is not None:
            self._watch()
        commanded = self._commanded.get(point_id)
        if commanded is None:
            return None
        for index, slot in enumerate(commanded.slots):
            if slot is not None:
                return index + 1
        return None

    def on_write(self, listener: WriteListener) -> None:
        self._listeners.append(listener)

    def _watch(self) -> None:
        """The device's watchdog logic, run whenever anything looks at or writes to the device (the
        protocol servers, the physics), so a lapse shows wherever the device is observed."""
        watchdog = self.watchdog
        if watchdog is None or not watchdog.expired(self.clock.now()):
            return
        released = False
        for point_id, commanded in self._commanded.items():
            if point_id == watchdog.point_id:
                continue  # the heartbeat itself shows the supervisor's last beat
            held = [p for p in watchdog.priorities if commanded.slots[p - 1] is not None]
            for priority in held:
                commanded.slots[priority - 1] = None
            if held:
                self.values[point_id] = self._effective(commanded)
                released = True
        for point_id, local in self._local.items():
            self.values[point_id] = local
            released = True
        self._local.clear()
        if released:
            watchdog.trips += 1

    @staticmethod
    def _effective(commanded: _Commanded) -> Value:
        for slot in commanded.slots:
            if slot is not None:
                return slot
        assert commanded.relinquish_default is not None
        return commanded.relinquish_default


def _zero(point: PointSpec) -> Value:
    data_type = getattr(point, "data_type", "")
    object_type = getattr(point, "object_type", "")
    function = getattr(point, "function", "")
    if data_type in ("bool", "Boolean") or object_type.startswith("binary-") or function in ("coil", "discrete_input"):
        return False
    if point.states:
        return min(point.states)
    if point.min is not None and point.min > 0:
        return point.min
    return 0.0
