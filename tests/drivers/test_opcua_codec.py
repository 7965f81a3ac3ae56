"""OPC-UA node ids, typed Variants, decoding and status codes, without a server."""

from __future__ import annotations

import struct

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceException,
    DeviceTimeout,
    IllegalAddress,
    LimitViolation,
    Quality,
    WriteRejected,
)
from drivers.opcua_codec import (
    INTEGER_RANGES,
    decode,
    encode,
    error_for_status,
    parse_node_id,
    quality_of,
    same_value,
)
from drivers.specs import OpcuaPointSpec


def point(data_type: str, **kwargs: object) -> OpcuaPointSpec:
    return OpcuaPointSpec(id="p", unit="", node_id="nsu=urn:x;s=p", data_type=data_type, writable=True,
                          **kwargs)  # type: ignore[arg-type]


def test_node_ids_are_resolved_by_namespace_uri() -> None:
    asyncua_namespaces = ["http://opcfoundation.org/UA/", "urn:server", "urn:mel:bms"]
    node_opcua_namespaces = ["http://opcfoundation.org/UA/", "urn:mel:bms"]
    parsed = parse_node_id("nsu=urn:mel:bms;s=Substation.Primary;Supply=1")
    assert parsed.resolve(asyncua_namespaces) == ua.NodeId("Substation.Primary;Supply=1", 2)
    assert parsed.resolve(node_opcua_namespaces) == ua.NodeId("Substation.Primary;Supply=1", 1)
    assert parse_node_id("nsu=urn:mel:bms;i=1001").resolve(node_opcua_namespaces) == ua.NodeId(1001, 1)
    assert parse_node_id("ns=0;i=2258").resolve([]) == ua.NodeId(2258, 0)
    assert parse_node_id("i=2258").resolve([]) == ua.NodeId(2258, 0)
    with pytest.raises(IllegalAddress, match="urn:elsewhere"):
        parse_node_id("nsu=urn:elsewhere;s=x").resolve(asyncua_namespaces)
    for bad in ("ns=2;s=x", "nsu=;s=x", "nsu=urn:x", "nsu=urn:x;q=1", "x"):
        with pytest.raises(ValueError):
            parse_node_id(bad)


@given(st.sampled_from(sorted(INTEGER_RANGES)), st.data())
def test_integers_encode_to_their_variant_type_within_range(data_type: str, data: st.DataObject) -> None:
    low, high = INTEGER_RANGES[data_type]
    value = data.draw(st.integers(low, high))
    variant = encode(point(data_type), value)
    assert variant.VariantType == getattr(ua.VariantType, data_type) and variant.Value == value
    assert decode(point(data_type), variant) == value
    outside = data.draw(st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1)))
    with pytest.raises(LimitViolation):
        encode(point(data_type), outside)


@given(st.floats(-1e30, 1e30, allow_nan=False))
def test_floats_keep_their_declared_precision(value: float) -> None:
    as_float = encode(point("Float"), value)
    as_double = encode(point("Double"), value)
    assert as_float.VariantType == ua.VariantType.Float and as_double.VariantType == ua.VariantType.Double
    # What a Float node stores is 32 bits: the read-back comparison allows exactly that rounding.
    stored = struct.unpack("<f", struct.pack("<f", value))[0]
    assert same_value(point("Float"), as_float, stored)
    assert same_value(point("Double"), as_double, value)
    assert not same_value(point("Double"), as_double, value + max(1.0, abs(value)) * 1e-9)


def test_writes_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(LimitViolation):
        encode(point("Double", min=0.0, max=10.0), 10.5)
    with pytest.raises(LimitViolation):
        encode(point("Double"), float("nan"))
    with pytest.raises(LimitViolation):
        encode(point("Float"), 1e39)
    with pytest.raises(WriteRejected):
        encode(point("Int32"), 2.5)
    with pytest.raises(WriteRejected):
        encode(point("Double"), "20")
    with pytest.raises(WriteRejected):
        encode(point("Boolean"), 2)
    with pytest.raises(WriteRejected):
        encode(point("String"), 1)
    assert encode(point("Int16"), 3.0).Value == 3
    assert encode(point("Boolean"), 1).Value is True
    states = point("Int16", states={0: "off", 1: "on"})
    assert encode(states, "on").Value == 1
    with pytest.raises(LimitViolation):
        encode(states, "maybe")


def test_decoding_refuses_values_of_another_kind() -> None:
    assert decode(point("Double"), ua.Variant(3, ua.VariantType.Int32)) == 3.0
    assert decode(point("Double"), ua.Variant(1.5, ua.VariantType.Float)) == 1.5
    for data_type, variant in (
        ("Double", ua.Variant("1.5", ua.VariantType.String)),
        ("Int32", ua.Variant(1.5, ua.VariantType.Double)),
        ("Boolean", ua.Variant(1, ua.VariantType.Int32)),
        ("Double", ua.Variant(None, ua.VariantType.Null)),
        ("Double", ua.Variant([1.0, 2.0], ua.VariantType.Double)),
        ("Double", ua.Variant(float("inf"), ua.VariantType.Double)),
    ):
        with pytest.raises(DecodeError):
            decode(point(data_type), variant)
    with pytest.raises(DecodeError):
        decode(point("Int16", states={0: "off", 1: "on"}), ua.Variant(5, ua.VariantType.Int16))


def test_status_codes_map_to_quality_and_typed_errors() -> None:
    assert quality_of(ua.StatusCode(ua.StatusCodes.Good)) is Quality.GOOD
    assert quality_of(ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)) is Quality.STALE
    assert quality_of(ua.StatusCode(ua.StatusCodes.BadSensorFailure)) is Quality.BAD
    expected = {
        ua.StatusCodes.BadNodeIdUnknown: IllegalAddress,
        ua.StatusCodes.BadTypeMismatch: WriteRejected,
        ua.StatusCodes.BadOutOfRange: WriteRejected,
        ua.StatusCodes.BadNotWritable: WriteRejected,
        ua.StatusCodes.BadUserAccessDenied: WriteRejected,
        ua.StatusCodes.BadTimeout: DeviceTimeout,
        ua.StatusCodes.BadSessionClosed: ConnectionLost,
        ua.StatusCodes.BadDeviceFailure: DeviceException,
    }
    for code, error_class in expected.items():
        error = error_for_status(ua.StatusCode(code), "write", device_id="d", point_id="p")
        assert type(error) is error_class
        assert error.device_id == "d" and error.point_id == "p"
        assert ua.StatusCode(code).name in str(error)
