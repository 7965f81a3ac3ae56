"""BACnet/IP driver over bacpypes3: batched reads, verified prioritised writes, discovery.

Each driver owns one bacpypes3 application, with the device's timeout and retry count in the application's
own device object, so a silent device only ever stalls its own requests. It talks from a UDP socket of its
own, or, when the site fixes the local BACnet/IP port, from the one socket the drivers share on that port.
Reads go out as ReadPropertyMultiple requests sized to fit the device's max APDU unsegmented; a device that
refuses the service is remembered and read with ReadProperty from then on.

Writes to a commandable object (a priority-array in its property-list, checked once per object) go at a
priority (point, device default, 10), are read back and checked against the priority array for a
higher-priority override. A non-commandable object takes plain present-value writes, verified by reading
present-value, and cannot be relinquished: some devices take a NULL there and leave their present-value
uninitialised, so the driver refuses before sending anything (`NotCommandable`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
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
    WritePropertyRequest,
)
from bacpypes3.basetypes import PropertyIdentifier, PropertyReference, Segmentation
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Null, ObjectIdentifier, Unsigned

from drivers.bacnet_discovery import discover
from drivers.bacnet_stack import Stack, build_stack, split_address
from drivers.bacnet_values import (
    ANSWER_OVERHEAD_BYTES,
    CLIENT_INSTANCE,
    DEFAULT_PRIORITY,
    MAX_APDU,
    PRIORITY_ARRAY,
    PRIORITY_ARRAY_NAME,
    PRIORITY_LEVELS,
    PROPERTY_LIST,
    RELINQUISH_DEFAULT,
    TOO_LONG_ABORTS,
    WILDCARD_DEVICE,
    PointPlan,
    chunk_plans,
    decode_object_identifier,
    decode_point,
    decode_property,
    encode_write,
    error_from_nack,
    error_from_type,
    is_rpm_refusal,
    plan_point,
    same_value,
)
from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceHealth,
    DeviceTimeout,
    Driver,
    DriverError,
    IllegalAddress,
    NotAttempted,
    NotCommandable,
    Override,
    Quality,
    Reading,
    Value,
    WriteMismatch,
    WriteRejected,
    WriteResult,
    not_attempted,
)
from drivers.health import Backoff, HealthTracker, Now, utc_now
from drivers.specs import BacnetDeviceSpec

__all__ = ["BacnetDriver", "BacnetStats", "InstanceMismatch", "PriorityArrayState", "chunk_plans", "discover"]


class InstanceMismatch(IllegalAddress):
    """Another device answers at the device's address: its instance number is `found`."""

    def __init__(self, message: str, *, found: int, device_id: str | None = None) -> None:
        super().__init__(message, device_id=device_id)
        self.found = found


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


@dataclass(slots=True)
class _Outcome:
    value: Value | None = None
    error: DriverError | None = None


class _Down(Exception):
    """The device stopped answering during a read; `sent` are the points of the request it left unanswered."""

    def __init__(self, cause: DriverError, sent: Sequence[PointPlan]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sent = sent


class BacnetDriver(Driver):
    """One BACnet/IP device: `read` the spec's points, `write` one at a priority, `read_priority_array`."""

    def __init__(self, spec: BacnetDeviceSpec, *, local_host: str | None = None, backoff: Backoff | None = None,
                 now: Now = utc_now) -> None:
        self.device_id = spec.id
        self.spec = spec
        self._plans = {point.id: plan_point(point) for point in spec.points}
        host, port = split_address(spec.address)
        self._device_address = Address(f"{host}:{port}")
        self._peer = (host, port)
        # Talk from loopback to a loopback device, otherwise from every interface; a port shared with the
        # site's other devices is bound on every interface, whichever devices they are.
        self._local_host = (local_host or spec.local_address
                            or ("127.0.0.1" if host.startswith("127.") and not spec.local_port else "0.0.0.0"))
        self._local_port = spec.local_port
        self._backoff = backoff or Backoff()
        self._now = now
        self._health = HealthTracker(spec.id, now=now)
        self._lock = asyncio.Lock()
        self._stack: Stack | None = None
        self._connected = False
        self._retry_at = 0.0
        self._rpm_refused = False
        # Objects known to be commandable (True) or not (False), from their property-list.
        self._commandable: dict[ObjectIdentifier, bool] = {}
        self._down_error: DriverError | None = None
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
                objectIdentifier=("device", CLIENT_INSTANCE),
                objectName=f"gridctl-{self.device_id}",
                vendorIdentifier=999,
                maxApduLengthAccepted=MAX_APDU,
                segmentationSupported=Segmentation.noSegmentation,
                apduTimeout=timeout_ms,
                numberOfApduRetries=self.spec.retries,
            )
            try:
                self._stack = build_stack([device_object], host=self._local_host, port=self._local_port,
                                          peer=self._peer)
            except OSError as exc:
                raise ConnectionLost(f"{self.device_id}: cannot open a BACnet/IP socket on "
                                     f"{self._local_host}:{self._local_port}: {exc}",
                                     device_id=self.device_id) from exc
        device_id = ObjectIdentifier(("device", self.spec.device_instance))
        try:
            max_apdu = await self._read_property(device_id, PropertyIdentifier("max-apdu-length-accepted"))
        except DriverError as exc:
            self._mark_down(exc)
            raise
        except ErrorRejectAbortNack as exc:
            error = error_from_nack(exc, self.device_id, None)
            if isinstance(error, IllegalAddress):
                error = await self._instance_mismatch() or IllegalAddress(
                    f"{self.device_id}: no device {self.spec.device_instance} at {self.spec.address} ({error})",
                    device_id=self.device_id)
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

    async def _instance_mismatch(self) -> InstanceMismatch | None:
        """After the device object was unknown: the error naming the device that does answer there, if any."""
        try:
            found = decode_object_identifier(
                await self._read_property(WILDCARD_DEVICE, PropertyIdentifier("object-identifier")))
        except (DriverError, ErrorRejectAbortNack):
            return None  # the device does not know the wildcard either: the original error stands
        if found is None or found[0] != "device" or found[1] == self.spec.device_instance:
            return None
        return InstanceMismatch(
            f"{self.device_id}: device instance mismatch (found {found[1]}): {self.spec.address} answers as "
            f"device {found[1]}, the site expects {self.spec.device_instance}",
            found=found[1], device_id=self.device_id)

    def _mark_down(self, error: DriverError) -> None:
        self._down_error = error
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
            cause = self._down_error
            last = f"{type(cause).__name__}: {cause}" if cause is not None else "unreachable"
            raise NotAttempted(f"not attempted: backing off after {last}; next attempt in {wait_s:.1f} s",
                               cause=cause, device_id=self.device_id)
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
            except NotAttempted as exc:
                return self._unavailable(plans, exc)
            except DriverError as exc:
                # The device failed the connect request; the points' own requests were never sent.
                return self._unavailable(plans, not_attempted(exc, self.device_id))
            outcomes: dict[str, _Outcome] = {}
            try:
                if not self._rpm_refused:
                    await self._read_batched(plans, outcomes)
                else:
                    await self._read_each(plans, outcomes)
            except _Down as down:
                self._mark_down(down.cause)
                by_point = {r.address: r for r in self._readings(
                    [plan for plan in plans if plan.point.id in outcomes], outcomes)}
                sent = [plan for plan in down.sent if plan.point.id not in outcomes]
                sent_ids = {plan.point.id for plan in sent}
                skipped = [plan for plan in plans if plan.point.id not in outcomes and plan.point.id not in sent_ids]
                by_point.update((r.address, r) for r in self._unavailable(sent, down.cause))
                by_point.update((r.address, r) for r in self._unavailable(
                    skipped, not_attempted(down.cause, self.device_id)))
                return [by_point[f"{self.device_id}/{plan.point.id}"] for plan in plans]
            readings = self._readings(plans, outcomes)
            failed = [reading for reading in readings if reading.quality is not Quality.GOOD]
            if failed:
                self._health.partial(f"{len(failed)} of {len(readings)} points failed, e.g. "
                                     f"{failed[0].address}: {failed[0].error}")
            else:
                self._health.success()
            return readings

    def _select(self, point_ids: Sequence[str] | None) -> list[PointPlan]:
        if point_ids is None:
            return list(self._plans.values())
        unknown = [point_id for point_id in point_ids if point_id not in self._plans]
        if unknown:
            raise KeyError(f"{self.device_id} has no point {', '.join(unknown)}")
        return [self._plans[point_id] for point_id in point_ids]

    async def _read_batched(self, plans: list[PointPlan], outcomes: dict[str, _Outcome]) -> None:
        pending = chunk_plans(plans, self._max_apdu - ANSWER_OVERHEAD_BYTES, self._max_items)
        while pending:
            chunk = pending.pop(0)
            try:
                results = await self._read_property_multiple([(p.object_id, p.property_id) for p in chunk])
            except DeviceTimeout as exc:
                raise _Down(exc, chunk) from None
            except DriverError as exc:
                for plan in chunk:
                    outcomes[plan.point.id] = _Outcome(error=exc)
                continue
            except ErrorRejectAbortNack as exc:
                if is_rpm_refusal(exc):
                    self._rpm_refused = True
                    await self._read_each([plan for rest in [chunk, *pending] for plan in rest], outcomes)
                    return
                if isinstance(exc, AbortPDU) and exc.apduAbortRejectReason in TOO_LONG_ABORTS and len(chunk) > 1:
                    # The answer did not fit after all: cap the chunk at half and try these points again.
                    self._max_items = max(1, len(chunk) // 2)
                    pending = chunk_plans(chunk, self._max_apdu, self._max_items) + pending
                    continue
                if isinstance(exc, ErrorPDU) and str(exc.errorClass) in ("object", "property"):
                    # Some devices fail the whole request for one bad object: read these one by one.
                    await self._read_each(chunk, outcomes)
                    continue
                error = error_from_nack(exc, self.device_id, None)
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
                        outcomes[plan.point.id] = _Outcome(value=decode_point(plan, result))
                    except DecodeError as exc:
                        outcomes[plan.point.id] = _Outcome(error=exc)
                else:
                    outcomes[plan.point.id] = _Outcome(error=error_from_type(result, plan.point.id, self.device_id))

    async def _read_each(self, plans: list[PointPlan], outcomes: dict[str, _Outcome]) -> None:
        for plan in plans:
            try:
                value = await self._read_property(plan.object_id, plan.property_id)
                outcomes[plan.point.id] = _Outcome(value=decode_point(plan, value))
            except DeviceTimeout as exc:
                raise _Down(exc, [plan]) from None
            except DriverError as exc:
                outcomes[plan.point.id] = _Outcome(error=exc)
            except ErrorRejectAbortNack as exc:
                outcomes[plan.point.id] = _Outcome(error=error_from_nack(exc, self.device_id, plan.point.id))

    def _readings(self, plans: list[PointPlan], outcomes: dict[str, _Outcome]) -> list[Reading]:
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

    def _unavailable(self, plans: list[PointPlan], error: DriverError) -> list[Reading]:
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

    def _priority_for(self, plan: PointPlan, priority: int | None) -> int:
        chosen = priority or plan.point.priority or self.spec.default_priority or DEFAULT_PRIORITY
        if not 1 <= chosen <= PRIORITY_LEVELS:
            raise ValueError(f"priority {chosen} outside 1..16")
        return chosen

    def _plan(self, point_id: str) -> PointPlan:
        plan = self._plans.get(point_id)
        if plan is None:
            raise KeyError(f"{self.device_id} has no point {point_id}")
        return plan

    async def write(self, point_id: str, value: Value | None, *, priority: int | None = None) -> WriteResult:
        """Write at a priority (a commandable object) or plainly (any other), read back and verify.

        `None` relinquishes the priority; a non-commandable object cannot be relinquished (NotCommandable,
        raised before anything is written). The result's `priority` is None for a plain write.
        """
        plan = self._plan(point_id)
        address = f"{self.device_id}/{point_id}"
        if not plan.point.writable:
            raise WriteRejected(f"{address} is not writable", device_id=self.device_id, point_id=point_id)
        level = self._priority_for(plan, priority)
        wire, plain = (Null(()), None) if value is None else encode_write(plan, value, self.device_id)
        async with self._lock:
            await self._ensure_connected()
            commandable = await self._is_commandable(plan)
            if not commandable and value is None:
                raise NotCommandable(
                    f"{address}: {plan.point.object_type} {plan.point.instance} is not commandable (no "
                    f"priority-array): there is no priority to relinquish, and a NULL written to it would leave "
                    f"its present-value uninitialised on some devices; nothing was sent",
                    device_id=self.device_id, point_id=point_id)
            request = WritePropertyRequest(objectIdentifier=plan.object_id, propertyIdentifier=plan.property_id,
                                           propertyValue=wire, priority=level if commandable else None)
            self.stats.write_property += 1
            try:
                await self._send(request)
            except DeviceTimeout as exc:
                self._mark_down(exc)
                raise
            except ErrorRejectAbortNack as exc:
                raise error_from_nack(exc, self.device_id, point_id, writing=True) from None
            if commandable:
                present, state = await self._read_back(plan)
            else:
                present, state = await self._read_present(plan), None
        ts = self._now()
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
        if plain is not None and not same_value(plan.kind, plain, present):
            raise WriteMismatch(f"{address}: wrote {plain!r}, read back {present!r}", device_id=self.device_id,
                                point_id=point_id)
        if present is not None:
            self._last_good[point_id] = (present, ts)
        return WriteResult(address, value, plain, present, ts, priority=level if commandable else None)

    async def is_commandable(self, point_id: str) -> bool:
        """Whether the point's object has a priority array (asked once per object, then remembered)."""
        plan = self._plan(point_id)
        async with self._lock:
            await self._ensure_connected()
            return await self._is_commandable(plan)

    async def _is_commandable(self, plan: PointPlan) -> bool:
        known = self._commandable.get(plan.object_id)
        if known is not None:
            return known
        try:
            listed = (await self._object_properties(plan, (PROPERTY_LIST,)))[PROPERTY_LIST]
        except DeviceTimeout:
            raise
        except DriverError as exc:
            listed = exc
        if isinstance(listed, frozenset):
            commandable = PRIORITY_ARRAY_NAME in listed
        elif isinstance(listed, IllegalAddress) and "unknown-object" in str(listed):
            raise listed
        else:
            # No property-list (devices older than protocol revision 14), or one too long to come back
            # unsegmented: ask for the priority array itself.
            slots = (await self._object_properties(plan, (PRIORITY_ARRAY,)))[PRIORITY_ARRAY]
            if isinstance(slots, IllegalAddress) and "unknown-property" in str(slots):
                commandable = False
            elif isinstance(slots, DriverError) and not isinstance(slots, DecodeError):
                raise slots
            else:
                commandable = True
        self._commandable[plan.object_id] = commandable
        return commandable

    async def _object_properties(self, plan: PointPlan, properties: Sequence[PropertyIdentifier]) -> dict[Any, Any]:
        """`_read_properties`, marking the device down when it does not answer."""
        try:
            return await self._read_properties(plan, properties)
        except DeviceTimeout as exc:
            self._mark_down(exc)
            raise

    async def _read_present(self, plan: PointPlan) -> Value | None:
        """The point's value read back after a plain write."""
        present = (await self._object_properties(plan, (plan.property_id,)))[plan.property_id]
        if isinstance(present, DriverError):
            raise present
        return present

    async def _read_back(self, plan: PointPlan) -> tuple[Value | None, PriorityArrayState]:
        """Present value, priority array and relinquish default of a commandable point."""
        values = await self._object_properties(plan, (plan.property_id, PRIORITY_ARRAY, RELINQUISH_DEFAULT))
        present = values[plan.property_id]
        if isinstance(present, DriverError):
            raise present
        slots = values[PRIORITY_ARRAY]
        if isinstance(slots, DriverError):
            raise slots
        relinquish = values[RELINQUISH_DEFAULT]
        return present, PriorityArrayState(slots, None if isinstance(relinquish, DriverError) else relinquish)

    async def read_priority_array(self, point_id: str) -> PriorityArrayState:
        """The point's priority array and relinquish default; NotCommandable if it has none."""
        plan = self._plan(point_id)
        async with self._lock:
            await self._ensure_connected()
            if not await self._is_commandable(plan):
                raise NotCommandable(f"{self.device_id}/{point_id}: {plan.point.object_type} {plan.point.instance} "
                                     f"is not commandable: it has no priority array", device_id=self.device_id,
                                     point_id=point_id)
            values = await self._object_properties(plan, (PRIORITY_ARRAY, RELINQUISH_DEFAULT))
        slots = values[PRIORITY_ARRAY]
        if isinstance(slots, DriverError):
            raise slots
        relinquish = values[RELINQUISH_DEFAULT]
        if isinstance(relinquish, DriverError):
            raise relinquish
        return PriorityArrayState(slots, relinquish)

    async def priority_array(self, point_id: str) -> tuple[Value | None, ...]:
        """The point's 16 priority slots (index 0 = priority 1), as the dispatch reviews overrides with."""
        return (await self.read_priority_array(point_id)).slots

    async def _read_properties(self, plan: PointPlan, properties: Sequence[PropertyIdentifier]) -> dict[Any, Any]:
        """Several properties of the point's object in one request (or one each when RPM is refused).

        Each value is decoded (the priority array as a tuple of 16), or a DriverError for that property.
        """
        raw: dict[Any, Any] = {}
        if not self._rpm_refused:
            try:
                results = await self._read_property_multiple([(plan.object_id, p) for p in properties])
                raw = {p: results.get((plan.object_id, p)) for p in properties}
            except ErrorRejectAbortNack as exc:
                if is_rpm_refusal(exc):
                    self._rpm_refused = True
                elif isinstance(exc, ErrorPDU) and str(exc.errorClass) in ("object", "property"):
                    pass  # one property missing failed the request: fall through to one request each
                else:
                    raise error_from_nack(exc, self.device_id, plan.point.id) from None
        for property_id in properties:
            if raw.get(property_id) is not None:
                continue
            try:
                raw[property_id] = await self._read_property(plan.object_id, property_id)
            except ErrorRejectAbortNack as exc:
                raw[property_id] = error_from_nack(exc, self.device_id, plan.point.id)
        decoded: dict[Any, Any] = {}
        for property_id, value in raw.items():
            if isinstance(value, DriverError):
                decoded[property_id] = value
            elif not isinstance(value, AnyValue):
                decoded[property_id] = error_from_type(value, plan.point.id, self.device_id)
            else:
                try:
                    decoded[property_id] = decode_property(plan, property_id, value, self.device_id)
                except DecodeError as exc:
                    decoded[property_id] = exc
        return decoded

