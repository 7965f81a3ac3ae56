"""Modbus TCP driver over pymodbus: planned block reads, verified writes, health per device.

Drivers for several unit ids behind one gateway share one `ModbusEndpoint` (one connection, one lock,
one reconnect task) through an `EndpointPool`; each driver keeps its own timeouts, retries and health.
"""

from __future__ import annotations

import asyncio
import struct
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime

from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceHealth,
    DeviceTimeout,
    Driver,
    DriverError,
    IllegalAddress,
    LimitViolation,
    NotAttempted,
    Quality,
    Reading,
    Value,
    WriteMismatch,
    WriteRejected,
    WriteResult,
    not_attempted,
)
from drivers.codec import ModbusCodec, check_write
from drivers.health import Backoff, HealthTracker, Now, utc_now
from drivers.modbus_endpoint import EndpointPool, ModbusEndpoint, exception_error, read_block
from drivers.modbus_plan import ReadBlock, plan_reads, single_point_blocks
from drivers.specs import ModbusDeviceSpec


def _pack_registers(count: int, registers: Sequence[int]) -> bytes:
    return struct.pack(f">{count}H", *registers)


# Plans kept per driver (one per distinct set of points read).
_MAX_CACHED_PLANS = 256
# Errors after which the device is not answering at all: the rest of a read is skipped.
_UNREACHABLE = (DeviceTimeout, ConnectionLost)
# Errors for which a point may still have a recent value worth reporting as stale.
_NO_ANSWER = (*_UNREACHABLE, NotAttempted)


class ShortAnswer(DecodeError):
    """The device answered with fewer registers (or bits) than asked, without an exception: some devices
    answer so for a read that runs past the end of their register map."""

_default_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EndpointPool] = weakref.WeakKeyDictionary()


def default_pool() -> EndpointPool:
    """The event loop's shared endpoint pool."""
    loop = asyncio.get_running_loop()
    pool = _default_pools.get(loop)
    if pool is None:
        pool = _default_pools[loop] = EndpointPool()
    return pool


class ModbusDriver(Driver):
    """One Modbus device (a unit id at host:port).

    `read` never raises for a device fault. A point the device did not answer for (timeout, lost
    connection) comes back STALE with its last good value while that value is younger than
    `stale_after_s` (default three poll intervals), else BAD; a point the device answered badly for
    (exception, malformed answer, undecodable value) is BAD. `last_errors` holds the typed error
    behind each point that is not good. Once one request times out, the rest of that read is not
    sent: the device is not answering, and those points are `NotAttempted`. A block the device
    refuses (illegal address) or answers short is split, and its points read one by one from then on,
    so one missing register does not take its neighbours down.
    """

    def __init__(self, spec: ModbusDeviceSpec, *, pool: EndpointPool | None = None, now: Now = utc_now,
                 offline_after: int = 3, stale_after_s: float | None = None,
                 backoff_factory: Callable[[], Backoff] | None = None) -> None:
        self.spec = spec
        self.device_id = spec.id
        self._pool = pool
        self._backoff_factory = backoff_factory
        self._now = now
        self._health = HealthTracker(spec.id, offline_after=offline_after, now=now)
        # A value older than this is not worth reporting as stale: it is bad.
        self.stale_after_s = stale_after_s if stale_after_s is not None else 3 * spec.poll_interval_s
        self._codecs = {point.id: ModbusCodec.for_point(point) for point in spec.points}
        self._addresses = {point.id: f"{spec.id}/{point.id}" for point in spec.points}
        self._plans: dict[tuple[str, ...] | None, list[ReadBlock]] = {}
        self._last_good: dict[str, tuple[Value, datetime]] = {}
        self._endpoint: ModbusEndpoint | None = None
        self._write_lock = asyncio.Lock()
        self.last_errors: dict[str, DriverError] = {}
        self.requests_sent = 0

    # ------------------------------------------------------------------ connection

    def _ensure_endpoint(self) -> ModbusEndpoint:
        if self._endpoint is None:
            if self._pool is None:
                self._pool = EndpointPool(self._backoff_factory) if self._backoff_factory else default_pool()
            self._endpoint = self._pool.acquire(self.spec.host, self.spec.port, connect_timeout_s=self.spec.timeout_s)
        return self._endpoint

    @property
    def endpoint(self) -> ModbusEndpoint:
        return self._ensure_endpoint()

    async def connect(self) -> None:
        endpoint = self._ensure_endpoint()
        if not await endpoint.wait_connected(self.spec.timeout_s * (self.spec.retries + 1)):
            error = ConnectionLost(f"{self.device_id}: cannot reach {endpoint.name} ({endpoint.last_error})",
                                   device_id=self.device_id)
            self._health.failure(error)
            raise error

    async def close(self) -> None:
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None and self._pool is not None:
            await self._pool.release(endpoint)

    def health(self) -> DeviceHealth:
        return self._health.snapshot()

    # ------------------------------------------------------------------ reads

    def plan(self, point_ids: Sequence[str] | None = None) -> list[ReadBlock]:
        """The read requests for these points (all when None), cached."""
        key = None if point_ids is None else tuple(point_ids)
        plan = self._plans.get(key)
        if plan is None:
            if point_ids is None:
                codecs = list(self._codecs.values())
            else:
                unknown = [pid for pid in point_ids if pid not in self._codecs]
                if unknown:
                    raise KeyError(f"{self.device_id} has no points {unknown}")
                codecs = [self._codecs[pid] for pid in dict.fromkeys(point_ids)]
            if len(self._plans) >= _MAX_CACHED_PLANS:
                self._plans.clear()
            plan = self._plans[key] = plan_reads(codecs, self.spec.max_gap_registers)
        return plan

    async def read(self, point_ids: Sequence[str] | None = None) -> list[Reading]:
        endpoint = self._ensure_endpoint()
        plan = self.plan(point_ids)
        key = None if point_ids is None else tuple(point_ids)
        readings: list[Reading] = []
        errors: list[DriverError] = []
        unreachable: DriverError | None = None
        index = 0
        while index < len(plan):
            block = plan[index]
            index += 1
            if unreachable is not None:
                self._fail_block(block, not_attempted(unreachable, self.device_id), readings)
                continue
            try:
                values = await self._read_values(endpoint, block)
            except (IllegalAddress, ShortAnswer) as exc:
                if len(block.codecs) > 1:
                    # A hole inside the block may not exist on this device, or the block runs past its
                    # end: read its points one by one from now on, so only the points that are really
                    # missing go bad.
                    split = single_point_blocks(block)
                    plan[index - 1:index] = split
                    self._plans[key] = plan
                    index -= 1
                    continue
                errors.append(exc)
                self._fail_block(block, exc, readings)
                continue
            except DriverError as exc:
                errors.append(exc)
                if isinstance(exc, _UNREACHABLE):
                    unreachable = exc
                self._fail_block(block, exc, readings)
                continue
            self._decode_block(block, values, readings, errors)
        if not errors:
            self._health.success()
        elif any(reading.quality is Quality.GOOD for reading in readings):
            self._health.partial(f"{len(errors)} failed, first: {type(errors[0]).__name__}: {errors[0]}")
        else:
            self._health.failure(errors[0])
        return readings

    async def _read_values(self, endpoint: ModbusEndpoint, block: ReadBlock) -> Sequence[int] | Sequence[bool]:
        spec = self.spec
        what = f"{self.device_id} {block.function} {block.start}+{block.count}"
        self.requests_sent += 1
        try:
            values = await read_block(endpoint, what, block.function, block.start, block.count,
                                      unit_id=spec.unit_id, timeout_s=spec.timeout_s, retries=spec.retries)
        except DriverError as exc:
            exc.device_id = self.device_id
            raise
        if len(values) < block.count:
            unit = "bits" if block.codecs[0].is_bit_table else "registers"
            raise ShortAnswer(f"{what}: short answer: the device sent {len(values)} of {block.count} {unit}",
                              device_id=self.device_id)
        if len(values) != block.count and not block.codecs[0].is_bit_table:
            raise DecodeError(f"{what}: the device sent {len(values)} registers for {block.count}",
                              device_id=self.device_id)
        return values

    def _decode_block(self, block: ReadBlock, values: Sequence[int] | Sequence[bool], readings: list[Reading],
                      errors: list[DriverError]) -> None:
        ts = self._now()
        start = block.start
        addresses = self._addresses
        last_good = self._last_good
        last_errors = self.last_errors
        good = Quality.GOOD
        if block.codecs[0].is_bit_table:
            data = None
        else:
            # The whole block as bytes once; each point unpacks its own slice of it.
            data = _pack_registers(len(values), values)
        for codec in block.codecs:
            point_id = codec.point.id
            try:
                if data is None:
                    value = bool(values[codec.point.register - start])
                else:
                    value = codec.decode_at(data, 2 * (codec.point.register - start))
            except DecodeError as exc:
                exc.device_id = self.device_id
                errors.append(exc)
                self.last_errors[point_id] = exc
                readings.append(Reading(addresses[point_id], ts, None, Quality.BAD, f"DecodeError: {exc}"))
                continue
            last_good[point_id] = (value, ts)
            if last_errors:
                last_errors.pop(point_id, None)
            readings.append(Reading(addresses[point_id], ts, value, good))

    def _fail_block(self, block: ReadBlock, error: DriverError, readings: list[Reading]) -> None:
        ts = self._now()
        text = f"{type(error).__name__}: {error}"
        for codec in block.codecs:
            point_id = codec.point.id
            self.last_errors[point_id] = error
            last = self._last_good.get(point_id)
            if (isinstance(error, _NO_ANSWER) and last is not None
                    and (ts - last[1]).total_seconds() <= self.stale_after_s):
                readings.append(Reading(self._addresses[point_id], ts, last[0], Quality.STALE, text))
            else:
                readings.append(Reading(self._addresses[point_id], ts, None, Quality.BAD, text))

    # ------------------------------------------------------------------ writes

    async def write(self, point_id: str, value: Value | None, *, priority: int | None = None) -> WriteResult:
        """Encode, write (FC5 coil, FC6 one register, FC16 several), read back and compare.

        Modbus has no priorities: `priority` is accepted and ignored.
        """
        codec = self._codecs.get(point_id)
        if codec is None:
            raise IllegalAddress(f"{self.device_id} has no point {point_id!r}", device_id=self.device_id,
                                 point_id=point_id)
        point = codec.point
        address = self._addresses[point_id]
        if not point.writable or point.function not in ("coil", "holding_register"):
            raise WriteRejected(f"{address} is not writable", device_id=self.device_id, point_id=point_id)
        if value is None:
            raise WriteRejected(f"{address}: Modbus cannot relinquish a point", device_id=self.device_id,
                                point_id=point_id)
        try:
            wire_value = check_write(point, value)
            if not codec.is_bit_table and point.bit is None:
                registers = codec.encode(wire_value)
        except LimitViolation as exc:
            exc.device_id, exc.point_id = self.device_id, point_id
            raise
        endpoint = self._ensure_endpoint()
        async with self._write_lock:
            try:
                if codec.is_bit_table:
                    registers = codec.encode(wire_value)
                    await self._send_write(endpoint, address, "write_coil", point.register, bool(registers[0]))
                else:
                    if point.bit is not None:
                        current = await self._read_values(endpoint, ReadBlock(point.function, point.register, 1,
                                                                              (codec,)))
                        registers = codec.encode(wire_value, current=list(current))
                    if len(registers) == 1:
                        await self._send_write(endpoint, address, "write_register", point.register, registers[0])
                    else:
                        await self._send_write(endpoint, address, "write_registers", point.register, registers)
                back = await self._read_values(endpoint, ReadBlock(point.function, point.register,
                                                                   codec.register_count, (codec,)))
            except DriverError as exc:
                exc.device_id, exc.point_id = self.device_id, point_id
                if isinstance(exc, _UNREACHABLE):
                    self._health.failure(exc)
                raise
            self._health.success()
        ts = self._now()
        written = codec.decode(registers)
        read_back = codec.decode(list(back[:codec.register_count]))
        if read_back != written:
            raise WriteMismatch(f"{address}: wrote {written!r}, read back {read_back!r}", device_id=self.device_id,
                                point_id=point_id)
        self._last_good[point_id] = (read_back, ts)
        return WriteResult(address, value, written, read_back, ts)

    async def _send_write(self, endpoint: ModbusEndpoint, address: str, method: str, register: int,
                          payload: int | bool | list[int]) -> None:
        spec = self.spec
        self.requests_sent += 1
        try:
            await endpoint.call(
                f"write {address}", lambda client: getattr(client, method)(register, payload, device_id=spec.unit_id),
                unit_id=spec.unit_id, timeout_s=spec.timeout_s, retries=spec.retries)
        except DriverError as exc:
            code = getattr(exc, "exception_code", None)
            if code in (1, 3):
                raise WriteRejected(f"{address}: {exc}") from exc
            raise


__all__ = ["EndpointPool", "ModbusDriver", "ModbusEndpoint", "ShortAnswer", "default_pool", "exception_error"]
