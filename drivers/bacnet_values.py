"""BACnet values and requests, protocol side: what to ask for, how big the answer is, what it means.

Pure functions over bacpypes3 types, no I/O: a point's read plan, ReadPropertyMultiple chunking to fit a
device's max APDU, decoding answers into plain values, encoding writes, and BACnet errors as the driver's
typed errors.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bacpypes3.apdu import AbortReason, ErrorPDU, ErrorRejectAbortNack, RejectPDU, RejectReason
from bacpypes3.basetypes import BinaryPV, PropertyIdentifier
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.constructeddata import Array, ArrayOf
from bacpypes3.primitivedata import (
    Boolean,
    CharacterString,
    Double,
    Enumerated,
    Integer,
    Null,
    ObjectIdentifier,
    Real,
    TagClass,
    TagNumber,
    Unsigned,
)
from bacpypes3.vendor import get_vendor_info

from drivers.base import (
    DecodeError,
    DeviceException,
    DriverError,
    IllegalAddress,
    LimitViolation,
    Value,
    WriteRejected,
)
from drivers.codec import check_write, to_engineering
from drivers.codec import shortest_float32 as shortest_real
from drivers.specs import BacnetPointSpec

PRIORITY_LEVELS = 16
DEFAULT_PRIORITY = 10
# The largest APDU BACnet/IP carries; our own client accepts it.
MAX_APDU = 1476
# Bytes one item takes in a ReadPropertyMultiple answer: object id 5, list open/close 2, property id 2-3,
# value open/close 2 around the value (Real/Unsigned/Enumerated up to 5, Double 10, an error 4). Strings
# have no bound, so other properties get a generous guess; a device that still aborts halves the chunk.
ITEM_BYTES_NUMBER = 18
ITEM_BYTES_DOUBLE = 23
ITEM_BYTES_OTHER = 64
# Complex-ACK header (3) and a little slack.
ANSWER_OVERHEAD_BYTES = 8
# Instance the driver's own (client) device object uses; it never answers anything.
CLIENT_INSTANCE = 4194302

_ILLEGAL_ADDRESS_CODES = {"unknown-object", "unknown-property", "invalid-array-index"}
_WRITE_REJECTED_CODES = {
    "write-access-denied", "value-out-of-range", "invalid-data-type", "datatype-not-supported",
    "invalid-value-in-this-state", "out-of-range", "value-too-long",
}
TOO_LONG_ABORTS = {AbortReason.segmentationNotSupported, AbortReason.bufferOverflow, AbortReason.apduTooLong}

_ASHRAE = get_vendor_info(0)
PRIORITY_ARRAY_NAME = "priority-array"
PRIORITY_ARRAY = PropertyIdentifier(PRIORITY_ARRAY_NAME)
RELINQUISH_DEFAULT = PropertyIdentifier("relinquish-default")
PROPERTY_LIST = PropertyIdentifier("property-list")
# "Whichever device answers": the device object of the device the request reaches.
WILDCARD_DEVICE = ObjectIdentifier(("device", 4194303))


@dataclass(frozen=True, slots=True)
class PointPlan:
    """What the driver precomputes once per point to read and write it."""

    point: BacnetPointSpec
    object_id: ObjectIdentifier
    property_id: PropertyIdentifier
    datatype: type
    kind: str  # analog | binary | multistate | accumulator | other
    answer_bytes: int  # upper estimate of its share of a ReadPropertyMultiple answer


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


def plan_point(point: BacnetPointSpec) -> PointPlan:
    """How to read and write one point; ValueError for an object type or property BACnet does not define."""
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
        size = ITEM_BYTES_DOUBLE if issubclass(datatype, Double) else ITEM_BYTES_OTHER
    else:
        size = ITEM_BYTES_NUMBER
    return PointPlan(point, object_id, property_id, datatype, kind, size)


def chunk_plans(plans: Sequence[PointPlan], budget_bytes: int, max_items: int | None = None) -> list[list[PointPlan]]:
    """Split the points into ReadPropertyMultiple requests whose answers fit `budget_bytes` unsegmented."""
    chunks: list[list[PointPlan]] = []
    current: list[PointPlan] = []
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


def to_python(value: Any, kind: str) -> Value | None:
    """A decoded bacpypes3 primitive as a plain Python value."""
    if isinstance(value, Null):
        return None
    if kind == "binary":
        return int(value) == 1
    if isinstance(value, Real):
        return shortest_real(value)
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


def decode_point(plan: PointPlan, value: AnyValue) -> Value | None:
    """A point's value off the wire, in engineering terms (a state the map does not know is an error)."""
    try:
        plain = to_python(value.cast_out(plan.datatype), plan.kind)
    except Exception as exc:
        raise DecodeError(f"{plan.point.object_type},{plan.point.instance} {plan.point.property}: {exc}",
                          point_id=plan.point.id) from exc
    return None if plain is None else to_engineering(plan.point, plain)


def same_value(kind: str, requested: Value, read_back: Value | None) -> bool:
    if read_back is None:
        return False
    if kind == "analog":
        return struct.pack("<f", float(requested)) == struct.pack("<f", float(read_back))
    if kind == "binary":
        return bool(requested) == bool(read_back)
    return requested == read_back


def _error_code(error: Any) -> str:
    return f"{error.errorClass}: {error.errorCode}"


def error_from_type(error: Any, point_id: str | None, device_id: str, *, writing: bool = False) -> DriverError:
    """A BACnet error (class, code) as the driver's typed error."""
    code = str(error.errorCode)
    message = f"{device_id}: {_error_code(error)}"
    if code in _ILLEGAL_ADDRESS_CODES:
        return IllegalAddress(message, device_id=device_id, point_id=point_id)
    if writing and code in _WRITE_REJECTED_CODES:
        return WriteRejected(message, device_id=device_id, point_id=point_id)
    return DeviceException(message, device_id=device_id, point_id=point_id)


def is_rpm_refusal(exc: ErrorRejectAbortNack) -> bool:
    if isinstance(exc, RejectPDU):
        return exc.apduAbortRejectReason == RejectReason.unrecognizedService
    if isinstance(exc, ErrorPDU):
        return str(exc.errorClass) == "services"
    return False



def encode_write(plan: PointPlan, value: Value, device_id: str) -> tuple[Any, Value]:
    """The wire value and its plain form, after the point's limits and states are checked (state
    labels are accepted for state points)."""
    point = plan.point
    address = f"{device_id}/{point.id}"
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
                        device_id=device_id, point_id=point.id)


def is_single_null(value: AnyValue) -> bool:
    """True for an answer that is one application NULL (what some devices send for an empty priority array)."""
    tags = list(value.tagList.tagList)
    if len(tags) == 3 and tags[0].tag_class == TagClass.opening and tags[2].tag_class == TagClass.closing:
        tags = tags[1:2]  # as it comes in a ReadPropertyMultiple result, between the value's context tags
    return (len(tags) == 1 and tags[0].tag_class == TagClass.application
            and tags[0].tag_number == TagNumber.null)


def decode_property_list(value: AnyValue) -> frozenset[str]:
    """The names of the properties an object's property-list holds ("priority-array", ...)."""
    return frozenset(str(identifier) for identifier in value.cast_out(ArrayOf(PropertyIdentifier)))


def decode_object_identifier(value: AnyValue) -> tuple[str, int] | None:
    """An object-identifier answer as (object type, instance), None when it is not one."""
    try:
        identifier = value.cast_out(ObjectIdentifier)
    except Exception:
        return None
    return str(identifier[0]), int(identifier[1])


def decode_property(plan: PointPlan, property_id: PropertyIdentifier, value: AnyValue, device_id: str) -> Any:
    """Another property of the point's object: the priority array as a tuple of 16 slots (a single NULL is
    an empty one), the property-list as a set of names."""
    if property_id == plan.property_id:
        return decode_point(plan, value)
    if property_id == PROPERTY_LIST:
        try:
            return decode_property_list(value)
        except Exception as exc:
            raise DecodeError(f"{device_id}: {property_id}: {exc}", point_id=plan.point.id) from exc
    if property_id == PRIORITY_ARRAY and is_single_null(value):
        return (None,) * PRIORITY_LEVELS
    object_class = _ASHRAE.get_object_class(plan.object_id[0])
    datatype = object_class.get_property_type(property_id) if object_class else None
    if datatype is None:
        raise DecodeError(f"{device_id}: no datatype for {property_id}", point_id=plan.point.id)
    kind = plan.kind
    try:
        decoded = value.cast_out(datatype)
        if isinstance(datatype, type) and issubclass(datatype, Array):
            slots = tuple(priority_slot(slot, kind) for slot in decoded)
            if len(slots) != PRIORITY_LEVELS:
                raise ValueError(f"priority array of {len(slots)} slots")
            return slots
        return to_python(decoded, kind)
    except Exception as exc:
        raise DecodeError(f"{device_id}: {property_id}: {exc}", point_id=plan.point.id) from exc


def priority_slot(slot: Any, kind: str) -> Value | None:
    """One PriorityValue of a priority array as a plain value (None when the slot is empty)."""
    choice = slot._choice
    if choice is None or choice == "null":
        return None
    return to_python(getattr(slot, choice), kind)


def error_from_nack(exc: ErrorRejectAbortNack, device_id: str, point_id: str | None, *, writing: bool = False
                    ) -> DriverError:
    """A BACnet error, reject or abort answer as the driver's typed error."""
    if isinstance(exc, ErrorPDU):
        return error_from_type(exc, point_id, device_id, writing=writing)
    kind = "reject" if isinstance(exc, RejectPDU) else "abort"
    return DeviceException(f"{device_id}: {kind}: {exc.apduAbortRejectReason}",
                           device_id=device_id, point_id=point_id)
