"""OPC-UA values and status codes ⇄ gridctl values and typed errors, independent of any connection."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from asyncua import ua

from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceException,
    DeviceTimeout,
    DriverError,
    IllegalAddress,
    LimitViolation,
    Quality,
    Value,
    WriteRejected,
)
from drivers.codec import check_write, to_engineering
from drivers.specs import OpcuaPointSpec

INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}
FLOAT_TYPES = ("Float", "Double")
FLOAT32_MAX = 3.4028234663852886e38
SUPPORTED_TYPES = ("Boolean", *INTEGER_RANGES, *FLOAT_TYPES, "String")

_INTEGER_VARIANTS = frozenset(getattr(ua.VariantType, name) for name in INTEGER_RANGES)
_FLOAT_VARIANTS = frozenset((ua.VariantType.Float, ua.VariantType.Double))

_ADDRESS_CODES = frozenset({
    ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid, ua.StatusCodes.BadAttributeIdInvalid,
})
_REJECT_CODES = frozenset({
    ua.StatusCodes.BadTypeMismatch, ua.StatusCodes.BadOutOfRange, ua.StatusCodes.BadNotWritable,
    ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadWriteNotSupported, ua.StatusCodes.BadNotSupported,
    ua.StatusCodes.BadIndexRangeInvalid, ua.StatusCodes.BadIndexRangeNoData, ua.StatusCodes.BadDataEncodingInvalid,
})
_TIMEOUT_CODES = frozenset({ua.StatusCodes.BadTimeout, ua.StatusCodes.BadRequestTimeout})
_CONNECTION_CODES = frozenset({
    ua.StatusCodes.BadSessionClosed, ua.StatusCodes.BadSessionIdInvalid, ua.StatusCodes.BadSessionNotActivated,
    ua.StatusCodes.BadSecureChannelClosed, ua.StatusCodes.BadSecureChannelIdInvalid,
    ua.StatusCodes.BadConnectionClosed, ua.StatusCodes.BadServerNotConnected, ua.StatusCodes.BadNotConnected,
    ua.StatusCodes.BadCommunicationError, ua.StatusCodes.BadShutdown, ua.StatusCodes.BadServerHalted,
    ua.StatusCodes.BadTcpInternalError, ua.StatusCodes.BadDisconnect,
})


def variant_type(data_type: str) -> ua.VariantType:
    if data_type not in SUPPORTED_TYPES:
        raise ValueError(f"unsupported OPC-UA data type {data_type!r}")
    return getattr(ua.VariantType, data_type)


# --------------------------------------------------------------------------- node ids


@dataclass(frozen=True, slots=True)
class ParsedNodeId:
    """A node id whose namespace is given by URI (resolved per server) or by index 0."""

    namespace_uri: str | None
    namespace_index: int
    rest: str  # "s=...", "i=...", "g=..." or "b=..."

    def resolve(self, namespaces: list[str]) -> ua.NodeId:
        """The node id on a server whose NamespaceArray is `namespaces`; IllegalAddress when absent."""
        index = self.namespace_index
        if self.namespace_uri is not None:
            try:
                index = namespaces.index(self.namespace_uri)
            except ValueError:
                raise IllegalAddress(f"namespace {self.namespace_uri!r} is not on the server") from None
        return ua.NodeId.from_string(f"ns={index};{self.rest}")


def parse_node_id(text: str) -> ParsedNodeId:
    """Parse `nsu=<uri>;s=...`, `ns=0;i=...` or a bare `i=...`.

    Namespace indexes other than 0 are refused: they differ between servers (asyncua's first
    namespace is 2, node-opcua's 1), so a site names its namespaces by URI.
    """
    if text.startswith("nsu="):
        uri, separator, rest = text[4:].partition(";")
        if not separator or not uri:
            raise ValueError(f"node id {text!r}: nsu=<uri>;<identifier> expected")
        return ParsedNodeId(uri, -1, _check_identifier(text, rest))
    if text.startswith("ns="):
        index, separator, rest = text[3:].partition(";")
        if not separator or index.strip() != "0":
            raise ValueError(f"node id {text!r}: only namespace 0 may be given by index; use nsu=<uri>")
        return ParsedNodeId(None, 0, _check_identifier(text, rest))
    return ParsedNodeId(None, 0, _check_identifier(text, text))


def _check_identifier(text: str, rest: str) -> str:
    if rest[:2] not in ("s=", "i=", "g=", "b=") or len(rest) < 3:
        raise ValueError(f"node id {text!r}: identifier must be s=, i=, g= or b=")
    return rest


# --------------------------------------------------------------------------- status codes


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Good → good, Uncertain → stale, Bad → bad (OPC-UA Part 4 severity bits)."""
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.STALE
    return Quality.BAD


def status_name(status: ua.StatusCode | int) -> str:
    code = status.value if isinstance(status, ua.StatusCode) else status
    try:
        return ua.StatusCode(code).name
    except Exception:
        return f"0x{code:08X}"


def error_for_status(status: ua.StatusCode | int, context: str, *, device_id: str | None = None,
                     point_id: str | None = None) -> DriverError:
    code = status.value if isinstance(status, ua.StatusCode) else status
    message = f"{context}: {status_name(code)}"
    if code in _ADDRESS_CODES:
        error_class: type[DriverError] = IllegalAddress
    elif code in _REJECT_CODES:
        error_class = WriteRejected
    elif code in _TIMEOUT_CODES:
        error_class = DeviceTimeout
    elif code in _CONNECTION_CODES:
        error_class = ConnectionLost
    else:
        error_class = DeviceException
    return error_class(message, device_id=device_id, point_id=point_id)


# --------------------------------------------------------------------------- values


def decode(point: OpcuaPointSpec, variant: ua.Variant | None) -> Value:
    """The engineering value of a Good/Uncertain DataValue; DecodeError when the type is not the point's."""
    if variant is None or variant.Value is None or variant.VariantType == ua.VariantType.Null:
        raise DecodeError(f"null value where {point.data_type} expected", point_id=point.id)
    value, vtype = variant.Value, variant.VariantType
    if isinstance(value, list | tuple):
        raise DecodeError(f"array value where scalar {point.data_type} expected", point_id=point.id)
    expected = point.data_type
    if expected == "Boolean" and vtype == ua.VariantType.Boolean:
        return bool(value)
    if expected == "String" and vtype == ua.VariantType.String:
        return str(value)
    if expected in INTEGER_RANGES and vtype in _INTEGER_VARIANTS:
        return to_engineering(point, int(value))
    # A Double point served as Float (or as an integer) still carries a number of the right kind.
    if expected in FLOAT_TYPES and (vtype in _FLOAT_VARIANTS or vtype in _INTEGER_VARIANTS):
        return to_engineering(point, float(value))
    raise DecodeError(f"{vtype.name} value {value!r} where {expected} expected", point_id=point.id)


def encode(point: OpcuaPointSpec, value: Value) -> ua.Variant:
    """The typed Variant for a write, after checking type and min/max; nothing is sent on failure.

    Servers are strict about types (a Python float on a Float node is BadTypeMismatch unless the
    Variant says Float), so the Variant always carries the point's declared type.
    """
    data_type = point.data_type
    vtype = variant_type(data_type)
    if data_type == "String":
        if not isinstance(value, str):
            raise WriteRejected(f"{value!r} is not a String", point_id=point.id)
        return ua.Variant(value, vtype)
    if isinstance(value, str) and not point.states:
        raise WriteRejected(f"{value!r} is not a {data_type}", point_id=point.id)
    # State labels become their raw value; limits are enforced (the codec every protocol shares).
    value = check_write(point, value)
    if data_type == "Boolean":
        if isinstance(value, bool):
            return ua.Variant(value, vtype)
        if isinstance(value, int | float) and value in (0, 1):
            return ua.Variant(bool(value), vtype)
        raise WriteRejected(f"{value!r} is not a Boolean", point_id=point.id)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WriteRejected(f"{value!r} is not a number", point_id=point.id)
    if data_type in INTEGER_RANGES:
        if isinstance(value, float):
            if not value.is_integer():
                raise WriteRejected(f"{value!r} is not an integer ({data_type})", point_id=point.id)
            value = int(value)
        low, high = INTEGER_RANGES[data_type]
        if not low <= value <= high:
            raise LimitViolation(f"{value} outside the {data_type} range {low}..{high}", point_id=point.id)
        return ua.Variant(int(value), vtype)
    if data_type == "Float" and abs(value) > FLOAT32_MAX:
        raise LimitViolation(f"{value!r} outside the Float range", point_id=point.id)
    return ua.Variant(float(value), vtype)


def same_value(point: OpcuaPointSpec, written: ua.Variant, read_back: Value) -> bool:
    """Whether the read-back value is what was written, at the precision of the point's type."""
    expected = written.Value
    if point.data_type == "Float":
        # The server stores 32 bits: compare after the same rounding.
        rounded = struct.unpack("f", struct.pack("f", float(expected)))[0]
        return isinstance(read_back, float) and (read_back == rounded or math.isclose(read_back, rounded,
                                                                                     rel_tol=1e-7))
    if point.data_type == "Double":
        return isinstance(read_back, float) and read_back == float(expected)
    return bool(read_back == expected and type(read_back) is type(expected))
