"""BACnet/IP driver over bacpypes3: batched reads, verified prioritised writes, discovery.

Each driver owns one bacpypes3 application on its own UDP socket, with the device's timeout and retry count
in the application's own device object, so a silent device only ever stalls its own requests. Reads go out
as ReadPropertyMultiple requests sized to fit the device's max APDU unsegmented; a device that refuses the
service is remembered and read with ReadProperty from then on. Writes go at a priority (point, device
default, 10), are read back and checked against the priority array for a higher-priority override.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bacpypes3.apdu import (
    AbortPDU,
    AbortReason,
    ErrorPDU,
    ErrorRejectAbortNack,
    ReadAccessSpecification,
    ReadPropertyACK,
    ReadPropertyMultipleACK,
    ReadPropertyMultipleRequest,
    ReadPropertyRequest,
    RejectPDU,
    RejectReason,
    WritePropertyRequest,
)
from bacpypes3.basetypes import BinaryPV, PropertyIdentifier, PropertyReference, Segmentation
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.constructeddata import Array
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import Address, GlobalBroadcast
from bacpypes3.primitivedata import (
    Boolean,
    CharacterString,
    Double,
    Enumerated,
    Integer,
    Null,
    ObjectIdentifier,
    Real,
    Unsigned,
)
from bacpypes3.vendor import get_vendor_info

from drivers.bacnet_stack import Stack, build_stack, split_address
from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceException,
    DeviceHealth,
    DeviceTimeout,
    Driver,
    DriverError,
    IllegalAddress,
    LimitViolation,
    Override,
    Quality,
    Reading,
    Value,
    WriteMismatch,
    WriteRejected,
    WriteResult,
)
from drivers.codec import check_write, to_engineering
from drivers.health import Backoff, HealthTracker, Now, utc_now
from drivers.specs import BacnetDeviceSpec, BacnetPointSpec

PRIORITY_LEVELS = 16
DEFAULT_PRIORITY = 10
# The largest APDU BACnet/IP carries; our own client accepts it.
MAX_APDU = 1476
# Bytes one item takes in a ReadPropertyMultiple answer: object id 5, list open/close 2, property id 2-3,
# value open/close 2 around the value (Real/Unsigned/Enumerated up to 5, Double 10, an error 4). Strings
# have no bound, so other properties get a generous guess; a device that still aborts halves the chunk.
_ITEM_BYTES_NUMBER = 18
_ITEM_BYTES_DOUBLE = 23
_ITEM_BYTES_OTHER = 64
# Complex-ACK header (3) and a little slack.
_ANSWER_OVERHEAD_BYTES = 8
# Instance the driver's own (client) device object uses; it never answers anything.
_CLIENT_INSTANCE = 4194302

_ILLEGAL_ADDRESS_CODES = {"unknown-object", "unknown-property", "invalid-array-index"}
_WRITE_REJECTED_CODES = {
    "write-access-denied", "value-out-of-range", "invalid-data-type", "datatype-not-supported",
    "invalid-value-in-this-state", "out-of-range", "value-too-long",
}
_TOO_LONG_ABORTS = {AbortReason.segmentationNotSupported, AbortReason.bufferOverflow, AbortReason.apduTooLong}

_ASHRAE = get_vendor_info(0)
_PRIORITY_ARRAY = PropertyIdentifier("priority-array")
_RELINQUISH_DEFAULT = PropertyIdentifier("relinquish-default")
_PRESENT_VALUE = PropertyIdentifier("present-value")


@dataclass(frozen=True, slots=True)
class PriorityArrayState:
    """A commandable point's 16 priority slots (index 0 = priority 1) and its relinquish default."""

    slots: tuple[Value | None, ...]
    relinquish_default: Value | None

    @property
    def active_priority(self) -> int | None:
        for index, slot in enumerate(self.slots):
            if slot is not None:
                return index + 1
        return None

    @property
    def effective_value(self) -> Value | None:
        active = self.active_priority
        return self.relinquish_default if active is None else self.slots[active - 1]


@dataclass(slots=True)
class BacnetStats:
    """Confirmed requests this driver sent, by service."""

    read_property_multiple: int = 0
    read_property: int = 0
    write_property: int = 0
    timeouts: int = 0

    @property
    def requests(self) -> int:
        return self.read_property_multiple + self.read_property + self.write_property


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the driver precomputes once per point to read and write it."""

    point: BacnetPointSpec
    object_id: ObjectIdentifier
    property_id: PropertyIdentifier
    datatype: type
    kind: str  # analog | binary | multistate | accumulator | other
    answer_bytes: int  # upper estimate of its share of a ReadPropertyMultiple answer


@dataclass(slots=True)
class _Outcome:
    value: Value | None = None
    error: DriverError | None = None


@dataclass
class _Down(Exception):
    """The device stopped answering during a read; carries the cause."""

    cause: DriverError = field(default_factory=lambda: DeviceTimeout("no answer"))


def _kind(object_type: str, property_name: str) -> str:
    if property_name not in ("present-value", "relinquish-default"):
        return "other"
    if object_type.startswith("analog-"):
        return "analog"
    if object_type.startswith("binary-"):
        return "binary"
    if object_type.startswith("multi-state-"):
        return "multistate"
    if object_type == "accumulator":
        return "accumulator"
    return "other"


def _plan(point: BacnetPointSpec) -> _Plan:
    object_id = ObjectIdentifier((point.object_type, point.instance))
    property_id = PropertyIdentifier(point.property)
    object_class = _ASHRAE.get_object_class(object_id[0])
    if object_class is None:
        raise ValueError(f"{point.id}: unknown BACnet object type {point.object_type!r}")
    datatype = object_class.get_property_type(property_id)
    if datatype is None:
        raise ValueError(f"{point.id}: {point.object_type} has no property {point.property!r}")
    kind = _kind(point.object_type, point.property)
    if kind == "other":
        size = _ITEM_BYTES_DOUBLE if issubclass(datatype, Double) else _ITEM_BYTES_OTHER
    else:
        size = _ITEM_BYTES_NUMBER
    return _Plan(point, object_id, property_id, datatype, kind, size)


def chunk_plans(plans: Sequence[_Plan], budget_bytes: int, max_items: int | None = None) -> list[list[_Plan]]:
    """Split the points into ReadPropertyMultiple requests whose answers fit `budget_bytes` unsegmented."""
    chunks: list[list[_Plan]] = []
    current: list[_Plan] = []
    used = 0
    for plan in plans:
        full = max_items is not None and len(current) >= max_items
        if current and (used + plan.answer_bytes > budget_bytes or full):
            chunks.append(current)
            current, used = [], 0
        current.append(plan)
        used += plan.answer_bytes
    if current:
        chunks.append(current)
    return chunks


def _shortest_real(value: float) -> float:
    """A BACnet Real is a float32: give back the shortest decimal that is the same float32 (21.3, not
    21.299999237060547)."""
    packed = struct.pack("<f", value)
    for digits in (7, 8, 9):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return float(value)


def _to_python(value: Any, kind: str) -> Value | None:
    """A decoded bacpypes3 primitive as a plain Python value."""
    if isinstance(value, Null):
        return None
    if kind == "binary":
        return int(value) == 1
    if isinstance(value, Real):
        return _shortest_real(value)
    if isinstance(value, Double | float):
        return float(value)
    if isinstance(value, Boolean):
        return bool(value)
    if isinstance(value, Enumerated):
        return value.attr if kind == "other" else int(value)
    if isinstance(value, Unsigned | Integer | int):
        return int(value)
    if isinstance(value, CharacterString | str):
        return str(value)
    raise TypeError(f"cannot represent {type(value).__name__} as a point value")


def _decode(plan: _Plan, value: AnyValue) -> Value | None:
    """A point's value off the wire, in engineering terms (a state the map does not know is an error)."""
    try:
        plain = _to_python(value.cast_out(plan.datatype), plan.kind)
    except Exception as exc:
        raise DecodeError(f"{plan.point.object_type},{plan.point.instance} {plan.point.property}: {exc}",
                          point_id=plan.point.id) from exc
    return None if plain is None else to_engineering(plan.point, plain)


def _same(kind: str, requested: Value, read_back: Value | None) -> bool:
    if read_back is None:
        return False
    if kind == "analog":
        return struct.pack("<f", float(requested)) == struct.pack("<f", float(read_back))
    if kind == "binary":
        return bool(requested) == bool(read_back)
    return requested == read_back


def _error_code(error: Any) -> str:
    return f"{error.errorClass}: {error.errorCode}"


def _error_from_type(error: Any, point_id: str | None, device_id: str, *, writing: bool = False) -> DriverError:
    """A BACnet error (class, code) as the driver's typed error."""
    code = str(error.errorCode)
    message = f"{device_id}: {_error_code(error)}"
    if code in _ILLEGAL_ADDRESS_CODES:
        return IllegalAddress(message, device_id=device_id, point_id=point_id)
    if writing and code in _WRITE_REJECTED_CODES:
        return WriteRejected(message, device_id=device_id, point_id=point_id)
    return DeviceException(message, device_id=device_id, point_id=point_id)


def _is_rpm_refusal(exc: ErrorRejectAbortNack) -> bool:
    if isinstance(exc, RejectPDU):
        return exc.apduAbortRejectReason == RejectReason.unrecognizedService
    if isinstance(exc, ErrorPDU):
        return str(exc.errorClass) == "services"
    return False


class BacnetDriver(Driver):
    """One BACnet/IP device: `read` the spec's points, `write` one at a priority, `read_priority_array`."""

    def __init__(self, spec: BacnetDeviceSpec, *, local_host: str | None = None, backoff: Backoff | None = None,
                 now: Now = utc_now) -> None:
        self.device_id = spec.id
        self.spec = spec
        self._plans = {point.id: _plan(point) for point in spec.points}
        host, port = split_address(spec.address)
        self._device_address = Address(f"{host}:{port}")
        # Talk from loopback to a loopback device, otherwise from every interface.
        self._local_host = local_host or ("127.0.0.1" if host.startswith("127.") else "0.0.0.0")
        self._backoff = backoff or Backoff()
        self._now = now
        self._health = HealthTracker(spec.id, now=now)
        self._lock = asyncio.Lock()
        self._stack: Stack | None = None
        self._connected = False
        self._retry_at = 0.0
        self._rpm_refused = False
        self._max_apdu = MAX_APDU
        # Set when the device aborted an answer our estimate said would fit.
        self._max_items: int | None = None
        self._last_good: dict[str, tuple[Value, datetime]] = {}
        self.stats = BacnetStats()

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        async with self._lock:
            await self._connect_locked()

    async def close(self) -> None:
        async with self._lock:
            stack, self._stack = self._stack, None
            self._connected = False
            if stack is not None:
                stack.close()

    def health(self) -> DeviceHealth:
        return self._health.snapshot()

    @property
    def supports_read_property_multiple(self) -> bool:
        """False once the device refused ReadPropertyMultiple."""
        return not self._rpm_refused

    @property
    def max_apdu(self) -> int:
        return self._max_apdu

    async def _connect_locked(self) -> None:
        if self._stack is None:
            timeout_ms = max(1, round(self.spec.timeout_s * 1000))
            device_object = DeviceObject(
                objectIdentifier=("device", _CLIENT_INSTANCE),
                objectName=f"gridctl-{self.device_id}",
                vendorIdentifier=999,
                maxApduLengthAccepted=MAX_APDU,
                segmentationSupported=Segmentation.noSegmentation,
                apduTimeout=timeout_ms,
                numberOfApduRetries=self.spec.retries,
            )
            try:
                self._stack = build_stack([device_object], host=self._local_host, port=0)
            except OSError as exc:
                raise ConnectionLost(f"{self.device_id}: cannot open a BACnet/IP socket: {exc}",
                                     device_id=self.device_id) from exc
        device_id = ObjectIdentifier(("device", self.spec.device_instance))
        try:
            max_apdu = await self._read_property(device_id, PropertyIdentifier("max-apdu-length-accepted"))
        except DriverError as exc:
            self._mark_down(exc)
            raise
        except ErrorRejectAbortNack as exc:
            error = self._error_from_nack(exc, None)
            self._mark_down(error)
            raise error from None
        try:
            self._max_apdu = min(MAX_APDU, int(max_apdu.cast_out(Unsigned)))
        except Exception as exc:
            error = DecodeError(f"{self.device_id}: max-apdu-length-accepted: {exc}", device_id=self.device_id)
            self._mark_down(error)
            raise error from exc
        self._connected = True
        self._backoff.reset()

    def _mark_down(self, error: DriverError) -> None:
        self._connected = False
        self._retry_at = asyncio.get_running_loop().time() + self._backoff.next_delay()
        self._health.failure(error)

    async def _ensure_connected(self) -> None:
        """Connect if needed; while backing off, fail without touching the network."""
        if self._connected:
            return
        loop = asyncio.get_running_loop()
        if self._stack is not None and loop.time() < self._retry_at:
            wait_s = self._retry_at - loop.time()
            last = self._health.snapshot().last_error or "unreachable"
            raise ConnectionLost(f"{self.device_id}: {last}; next attempt in {wait_s:.1f} s", device_id=self.device_id)
        await self._connect_locked()

    # ------------------------------------------------------------------ requests

    async def _send(self, apdu: Any) -> Any:
        """Send one confirmed request; BACnet errors come back as ErrorRejectAbortNack, a timeout as
        DeviceTimeout."""
        assert self._stack is not None
        apdu.pduDestination = self._device_address
        # bacpypes3 times out and retries in its state machine; this bound only guards against a stuck one.
        bound_s = self.spec.timeout_s * (self.spec.retries + 1) + 1.0
        try:
            async with asyncio.timeout(bound_s):
                return await self._stack.app.request(apdu)
        except TimeoutError:
            self.stats.timeouts += 1
            raise DeviceTimeout(f"{self.device_id}: no answer within {bound_s:.1f} s",
                                device_id=self.device_id) from None
        except AbortPDU as abort:
            if abort.apduAbortRejectReason == AbortReason.noResponse and not abort.apduSrv:
                self.stats.timeouts += 1
                tries = self.spec.retries + 1
                raise DeviceTimeout(f"{self.device_id}: no answer after {tries} tries of {self.spec.timeout_s} s",
                                    device_id=self.device_id) from None
            raise

    def _error_from_nack(self, exc: ErrorRejectAbortNack, point_id: str | None, *, writing: bool = False
                         ) -> DriverError:
        if isinstance(exc, ErrorPDU):
            return _error_from_type(exc, point_id, self.device_id, writing=writing)
        kind = "reject" if isinstance(exc, RejectPDU) else "abort"
        return DeviceException(f"{self.device_id}: {kind}: {exc.apduAbortRejectReason}",
                               device_id=self.device_id, point_id=point_id)

    async def _read_property(self, object_id: ObjectIdentifier, property_id: PropertyIdentifier) -> AnyValue:
        request = ReadPropertyRequest(objectIdentifier=object_id, propertyIdentifier=property_id)
        self.stats.read_property += 1
        ack = await self._send(request)
        if not isinstance(ack, ReadPropertyACK):
            raise DecodeError(f"{self.device_id}: unexpected answer {type(ack).__name__}", device_id=self.device_id)
        return ack.propertyValue

    async def _read_property_multiple(self, items: Sequence[tuple[ObjectIdentifier, PropertyIdentifier]]
                                      ) -> dict[tuple[ObjectIdentifier, PropertyIdentifier], AnyValue | Any]:
        """One ReadPropertyMultiple; maps (object, property) to the value (an Any) or an ErrorType."""
        specs: dict[ObjectIdentifier, list[PropertyIdentifier]] = {}
        for object_id, property_id in items:
            specs.setdefault(object_id, []).append(property_id)
        request = ReadPropertyMultipleRequest(listOfReadAccessSpecs=[
            ReadAccessSpecification(objectIdentifier=object_id,
                                    listOfPropertyReferences=[PropertyReference(propertyIdentifier=p) for p in props])
            for object_id, props in specs.items()
        ])
        self.stats.read_property_multiple += 1
        ack = await self._send(request)
        if not isinstance(ack, ReadPropertyMultipleACK):
            raise DecodeError(f"{self.device_id}: unexpected answer {type(ack).__name__}", device_id=self.device_id)
        results: dict[tuple[ObjectIdentifier, PropertyIdentifier], Any] = {}
        for access_result in ack.listOfReadAccessResults:
            for element in access_result.listOfResults:
                read_result = element.readResult
                value = read_result.propertyAccessError or read_result.propertyValue
                results[(access_result.objectIdentifier, element.propertyIdentifier)] = value
        return results

    # ------------------------------------------------------------------ reads

    async def read(self, point_ids: Sequence[str] | None = None) -> list[Reading]:
        plans = self._select(point_ids)
        async with self._lock:
            try:
                await self._ensure_connected()
            except DriverError as exc:
                return self._unavailable(plans, exc)
            outcomes: dict[str, _Outcome] = {}
            try:
                if not self._rpm_refused:
                    await self._read_batched(plans, outcomes)
                else:
                    await self._read_each(plans, outcomes)
            except _Down as down:
                self._mark_down(down.cause)
                done = [plan for plan in plans if plan.point.id in outcomes]
                rest = [plan for plan in plans if plan.point.id not in outcomes]
                return self._readings(done, outcomes) + self._unavailable(rest, down.cause)
            readings = self._readings(plans, outcomes)
            failed = [reading for reading in readings if reading.quality is not Quality.GOOD]
            if failed:
                self._health.partial(f"{len(failed)} of {len(readings)} points failed, e.g. "
                                     f"{failed[0].address}: {failed[0].error}")
            else:
                self._health.success()
            return readings

    def _select(self, point_ids: Sequence[str] | None) -> list[_Plan]:
        if point_ids is None:
            return list(self._plans.values())
        unknown = [point_id for point_id in point_ids if point_id not in self._plans]
        if unknown:
            raise KeyError(f"{self.device_id} has no point {', '.join(unknown)}")
        return [self._plans[point_id] for point_id in point_ids]

    async def _read_batched(self, plans: list[_Plan], outcomes: dict[str, _Outcome]) -> None:
        pending = chunk_plans(plans, self._max_apdu - _ANSWER_OVERHEAD_BYTES, self._max_items)
        while pending:
            chunk = pending.pop(0)
            try:
                results = await self._read_property_multiple([(p.object_id, p.property_id) for p in chunk])
            except DeviceTimeout as exc:
                raise _Down(exc) from None
            except DriverError as exc:
                for plan in chunk:
                    outcomes[plan.point.id] = _Outcome(error=exc)
                continue
            except ErrorRejectAbortNack as exc:
                if _is_rpm_refusal(exc):
                    self._rpm_refused = True
                    await self._read_each([plan for rest in [chunk, *pending] for plan in rest], outcomes)
                    return
                if isinstance(exc, AbortPDU) and exc.apduAbortRejectReason in _TOO_LONG_ABORTS and len(chunk) > 1:
                    # The answer did not fit after all: cap the chunk at half and try these points again.
                    self._max_items = max(1, len(chunk) // 2)
                    pending = chunk_plans(chunk, self._max_apdu, self._max_items) + pending
                    continue
                if isinstance(exc, ErrorPDU) and str(exc.errorClass) in ("object", "property"):
                    # Some devices fail the whole request for one bad object: read these one by one.
                    await self._read_each(chunk, outcomes)
                    continue
                error = self._error_from_nack(exc, None)
                for plan in chunk:
                    outcomes[plan.point.id] = _Outcome(error=error)
                continue
            for plan in chunk:
                result = results.get((plan.object_id, plan.property_id))
                if result is None:
                    error: DriverError = DecodeError(f"{self.device_id}: no result for {plan.point.object_type},"
                                                     f"{plan.point.instance}", point_id=plan.point.id)
                    outcomes[plan.point.id] = _Outcome(error=error)
                elif isinstance(result, AnyValue):
                    try:
                        outcomes[plan.point.id] = _Outcome(value=_decode(plan, result))
                    except DecodeError as exc:
                        outcomes[plan.point.id] = _Outcome(error=exc)
                else:
                    outcomes[plan.point.id] = _Outcome(error=_error_from_type(result, plan.point.id, self.device_id))

    async def _read_each(self, plans: list[_Plan], outcomes: dict[str, _Outcome]) -> None:
        for plan in plans:
            try:
                value = await self._read_property(plan.object_id, plan.property_id)
                outcomes[plan.point.id] = _Outcome(value=_decode(plan, value))
            except DeviceTimeout as exc:
                raise _Down(exc) from None
            except DriverError as exc:
                outcomes[plan.point.id] = _Outcome(error=exc)
            except ErrorRejectAbortNack as exc:
                outcomes[plan.point.id] = _Outcome(error=self._error_from_nack(exc, plan.point.id))

    def _readings(self, plans: list[_Plan], outcomes: dict[str, _Outcome]) -> list[Reading]:
        ts = self._now()
        readings = []
        for plan in plans:
            outcome = outcomes[plan.point.id]
            address = f"{self.device_id}/{plan.point.id}"
            if outcome.error is None and outcome.value is not None:
                self._last_good[plan.point.id] = (outcome.value, ts)
                readings.append(Reading(address, ts, outcome.value, Quality.GOOD))
            else:
                error = outcome.error or DecodeError("the device returned no value", point_id=plan.point.id)
                readings.append(Reading(address, ts, None, Quality.BAD, f"{type(error).__name__}: {error}"))
        return readings

    def _unavailable(self, plans: list[_Plan], error: DriverError) -> list[Reading]:
        """Readings for points the device did not answer for: the last good value as STALE, else BAD."""
        ts = self._now()
        text = f"{type(error).__name__}: {error}"
        readings = []
        for plan in plans:
            address = f"{self.device_id}/{plan.point.id}"
            last = self._last_good.get(plan.point.id)
            if last is None:
                readings.append(Reading(address, ts, None, Quality.BAD, text))
            else:
                readings.append(Reading(address, ts, last[0], Quality.STALE,
                                        f"{text} (value from {last[1].isoformat()})"))
        return readings

    # ------------------------------------------------------------------ writes

    def _priority_for(self, plan: _Plan, priority: int | None) -> int:
        chosen = priority or plan.point.priority or self.spec.default_priority or DEFAULT_PRIORITY
        if not 1 <= chosen <= PRIORITY_LEVELS:
            raise ValueError(f"priority {chosen} outside 1..16")
        return chosen

    def _encode(self, plan: _Plan, value: Value) -> tuple[Any, Value]:
        """The wire value and its plain form, after the point's limits and states are checked (state
        labels are accepted for state points)."""
        point = plan.point
        address = f"{self.device_id}/{point.id}"
        if plan.kind == "binary":
            if isinstance(value, str) and point.states is None and value in ("active", "inactive"):
                value = value == "active"
            value = check_write(point, value)
            if isinstance(value, str) or int(value) != value or int(value) not in (0, 1):
                raise LimitViolation(f"{address}: {value!r} is not a binary value", point_id=point.id)
            plain = bool(value)
            return BinaryPV("active" if plain else "inactive"), plain
        value = check_write(point, value)
        if plan.kind == "analog" or (plan.kind == "other" and issubclass(plan.datatype, Real)):
            return Real(float(value)), float(value)
        if plan.kind in ("multistate", "accumulator"):
            if isinstance(value, str) or int(value) != value or value < 0:
                raise LimitViolation(f"{address}: {value!r} is not a state number", point_id=point.id)
            return Unsigned(int(value)), int(value)
        raise WriteRejected(f"{address}: writing {point.property} of {point.object_type} is not supported",
                            device_id=self.device_id, point_id=point.id)

    async def write(self, point_id: str, value: Value | None, *, priority: int | None = None) -> WriteResult:
        plan = self._plans.get(point_id)
        if plan is None:
            raise KeyError(f"{self.device_id} has no point {point_id}")
        if not plan.point.writable:
            raise WriteRejected(f"{self.device_id}/{point_id} is not writable", device_id=self.device_id,
                                point_id=point_id)
        level = self._priority_for(plan, priority)
        wire, plain = (Null(()), None) if value is None else self._encode(plan, value)
        async with self._lock:
            await self._ensure_connected()
            request = WritePropertyRequest(objectIdentifier=plan.object_id, propertyIdentifier=plan.property_id,
                                           propertyValue=wire, priority=level)
            self.stats.write_property += 1
            try:
                await self._send(request)
            except DeviceTimeout as exc:
                self._mark_down(exc)
                raise
            except ErrorRejectAbortNack as exc:
                raise self._error_from_nack(exc, point_id, writing=True) from None
            present, state = await self._read_back(plan)
        ts = self._now()
        address = f"{self.device_id}/{point_id}"
        if state is not None:
            slot = state.slots[level - 1]
            if plain is None and slot is not None:
                raise WriteMismatch(f"{address}: priority {level} still holds {slot!r} after relinquish",
                                    device_id=self.device_id, point_id=point_id)
            active = state.active_priority
            if plain is not None and active is not None and active < level:
                raise Override(f"{address}: priority {active} holds {state.slots[active - 1]!r} over our "
                               f"priority {level}", active_priority=active, device_id=self.device_id,
                               point_id=point_id)
        if plain is not None and not _same(plan.kind, plain, present):
            raise WriteMismatch(f"{address}: wrote {plain!r}, read back {present!r}", device_id=self.device_id,
                                point_id=point_id)
        if present is not None:
            self._last_good[point_id] = (present, ts)
        return WriteResult(address, value, plain, present, ts, priority=level)

    async def _read_back(self, plan: _Plan) -> tuple[Value | None, PriorityArrayState | None]:
        """Present value and, for a commandable point, its priority array (None when it has none)."""
        try:
            values = await self._read_properties(plan, (plan.property_id, _PRIORITY_ARRAY, _RELINQUISH_DEFAULT))
        except DeviceTimeout as exc:
            self._mark_down(exc)
            raise
        present = values[plan.property_id]
        if isinstance(present, DriverError):
            raise present
        slots = values[_PRIORITY_ARRAY]
        if isinstance(slots, IllegalAddress):
            return present, None
        if isinstance(slots, DriverError):
            raise slots
        relinquish = values[_RELINQUISH_DEFAULT]
        return present, PriorityArrayState(slots, None if isinstance(relinquish, DriverError) else relinquish)

    async def read_priority_array(self, point_id: str) -> PriorityArrayState:
        """The point's priority array and relinquish default; IllegalAddress if it is not commandable."""
        plan = self._plans.get(point_id)
        if plan is None:
            raise KeyError(f"{self.device_id} has no point {point_id}")
        async with self._lock:
            await self._ensure_connected()
            try:
                values = await self._read_properties(plan, (_PRIORITY_ARRAY, _RELINQUISH_DEFAULT))
            except DeviceTimeout as exc:
                self._mark_down(exc)
                raise
        slots = values[_PRIORITY_ARRAY]
        if isinstance(slots, DriverError):
            raise slots
        relinquish = values[_RELINQUISH_DEFAULT]
        if isinstance(relinquish, DriverError):
            raise relinquish
        return PriorityArrayState(slots, relinquish)

    async def _read_properties(self, plan: _Plan, properties: Sequence[PropertyIdentifier]) -> dict[Any, Any]:
        """Several properties of the point's object in one request (or one each when RPM is refused).

        Each value is decoded (the priority array as a tuple of 16), or a DriverError for that property.
        """
        raw: dict[Any, Any] = {}
        if not self._rpm_refused:
            try:
                results = await self._read_property_multiple([(plan.object_id, p) for p in properties])
                raw = {p: results.get((plan.object_id, p)) for p in properties}
            except ErrorRejectAbortNack as exc:
                if _is_rpm_refusal(exc):
                    self._rpm_refused = True
                elif isinstance(exc, ErrorPDU) and str(exc.errorClass) in ("object", "property"):
                    pass  # one property missing failed the request: fall through to one request each
                else:
                    raise self._error_from_nack(exc, plan.point.id) from None
        for property_id in properties:
            if raw.get(property_id) is not None:
                continue
            try:
                raw[property_id] = await self._read_property(plan.object_id, property_id)
            except ErrorRejectAbortNack as exc:
                raw[property_id] = self._error_from_nack(exc, plan.point.id)
        decoded: dict[Any, Any] = {}
        for property_id, value in raw.items():
            if isinstance(value, DriverError):
                decoded[property_id] = value
            elif not isinstance(value, AnyValue):
                decoded[property_id] = _error_from_type(value, plan.point.id, self.device_id)
            else:
                try:
                    decoded[property_id] = self._decode_property(plan, property_id, value)
                except DecodeError as exc:
                    decoded[property_id] = exc
        return decoded

    def _decode_property(self, plan: _Plan, property_id: PropertyIdentifier, value: AnyValue) -> Any:
        if property_id == plan.property_id:
            return _decode(plan, value)
        object_class = _ASHRAE.get_object_class(plan.object_id[0])
        datatype = object_class.get_property_type(property_id) if object_class else None
        if datatype is None:
            raise DecodeError(f"{self.device_id}: no datatype for {property_id}", point_id=plan.point.id)
        kind = plan.kind
        try:
            decoded = value.cast_out(datatype)
            if isinstance(datatype, type) and issubclass(datatype, Array):
                slots = tuple(_priority_slot(slot, kind) for slot in decoded)
                if len(slots) != PRIORITY_LEVELS:
                    raise ValueError(f"priority array of {len(slots)} slots")
                return slots
            return _to_python(decoded, kind)
        except Exception as exc:
            raise DecodeError(f"{self.device_id}: {property_id}: {exc}", point_id=plan.point.id) from exc


def _priority_slot(slot: Any, kind: str) -> Value | None:
    choice = slot._choice
    if choice is None or choice == "null":
        return None
    return _to_python(getattr(slot, choice), kind)


# --------------------------------------------------------------------------- discovery


async def discover(*, bbmd: str | None = None, interface: str | None = None, target: str | None = None,
                   port: int = 47808, local_host: str = "127.0.0.1", low_limit: int | None = None,
                   high_limit: int | None = None, timeout_s: float = 3.0, ttl_s: int = 30) -> list[tuple[int, str]]:
    """Who-Is / I-Am: the (device instance, "ip:port") of every device that answers, sorted.

    One way to reach the devices:
    - `bbmd` ("ip:port"): register as a foreign device there (from `local_host`, any port) and broadcast
      the Who-Is through it, to every device on the BBMD's network and its other foreign devices;
    - `interface` ("ip/prefix", e.g. "192.168.1.10/24"): broadcast on that network from `port` (47808 on a
      real LAN), as a device on it;
    - `target` ("ip:port"): a Who-Is to that one address.
    """
    if sum(way is not None for way in (bbmd, interface, target)) != 1:
        raise ValueError("discovery takes exactly one of: a BBMD, a local interface, a target address")
    device_object = DeviceObject(objectIdentifier=("device", _CLIENT_INSTANCE), objectName="gridctl-discovery",
                                 vendorIdentifier=999, segmentationSupported=Segmentation.noSegmentation)
    if interface is not None:
        stack = build_stack([device_object], host=interface, port=port)
    else:
        stack = build_stack([device_object], host=local_host, port=0, mode="foreign" if bbmd else "normal",
                            bbmd_address=bbmd, ttl_s=ttl_s)
    try:
        if bbmd is not None and not await stack.wait_registered(timeout_s):
            raise ConnectionLost(f"BBMD {bbmd} did not accept our foreign-device registration")
        destination = GlobalBroadcast() if target is None else Address(":".join(map(str, split_address(target))))
        i_ams = await stack.app.who_is(low_limit, high_limit, address=destination, timeout=timeout_s)
    finally:
        stack.close()
    found: dict[int, str] = {}
    own = stack.address.addrTuple
    for i_am in i_ams or []:
        source = i_am.pduSource.addrTuple
        if source == own:
            continue
        found[i_am.iAmDeviceIdentifier[1]] = f"{source[0]}:{source[1]}"
    return sorted(found.items())
