"""A Driver that acts on a `sim.core.SimDevice` in-process: for unit tests of the write rules.

The protocol stacks are tested on loopback elsewhere; here only the arbiter's rules are under test,
so the device is the simulator's state object, with the same priority-array semantics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from drivers.base import (
    DeviceHealth,
    DeviceTimeout,
    Driver,
    HealthState,
    LimitViolation,
    Override,
    Quality,
    Reading,
    Value,
    WriteMismatch,
    WriteResult,
)
from sim.core import SimDevice


class SimDeviceDriver(Driver):
    def __init__(self, device: SimDevice, *, bacnet: bool = False) -> None:
        self.device = device
        self.device_id = device.id
        self.bacnet = bacnet
        self.writes: list[tuple[str, Value | None, int | None]] = []
        # Test knobs: the device silently stores this instead of what was written; or times out; or takes
        # `delay_s` to answer; or, with `hold` set, waits for it (`entered` tells a write is in flight).
        self.store_instead: Value | None = None
        self.timeout = False
        self.delay_s = 0.0
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.in_flight = 0

    async def connect(self) -> None:
        return None

    async def read(self, point_ids: Sequence[str] | None = None) -> list[Reading]:
        now = datetime.now(UTC)
        ids = point_ids or list(self.device.points)
        return [Reading(f"{self.device_id}/{p}", now, self.device.get(p), Quality.GOOD) for p in ids]

    async def write(self, point_id: str, value: Value | None, *, priority: int | None = None) -> WriteResult:
        spec = self.device.points[point_id]
        if isinstance(value, int | float) and not isinstance(value, bool) and (
                (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max)):
            raise LimitViolation(f"{value} outside [{spec.min}, {spec.max}]", device_id=self.device_id,
                                 point_id=point_id)
        if self.timeout:
            raise DeviceTimeout("no answer", device_id=self.device_id, point_id=point_id)
        self.in_flight += 1
        self.entered.set()
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.hold is not None:
                await self.hold.wait()
        finally:
            self.in_flight -= 1
        if self.bacnet and value is not None:  # a relinquish is never refused: it only clears our slot
            active = self.device.active_priority(point_id)
            if active is not None and priority is not None and active < priority:
                raise Override(f"priority {active} holds {point_id}", active_priority=active,
                               device_id=self.device_id, point_id=point_id)
        self.writes.append((point_id, value, priority))
        stored = self.store_instead if self.store_instead is not None else value
        self.device.write(point_id, stored, priority if self.bacnet else None)
        read_back = self.device.get(point_id)
        if value is not None and read_back != value:
            raise WriteMismatch(f"wrote {value}, read back {read_back}", device_id=self.device_id,
                                point_id=point_id)
        return WriteResult(f"{self.device_id}/{point_id}", value, value, read_back, datetime.now(UTC), priority)

    async def priority_array(self, point_id: str) -> list[Value | None]:
        return self.device.priority_array(point_id)

    async def close(self) -> None:
        return None

    def health(self) -> DeviceHealth:
        return DeviceHealth(self.device_id, HealthState.OK, None, None, None, 0)
