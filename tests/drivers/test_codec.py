"""Codec: known register layouts, and round trips for every data type × word order × byte order × scaling."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import DecodeError, LimitViolation
from drivers.codec import (
    INTEGER_RANGE,
    REGISTER_COUNT,
    ModbusCodec,
    check_write,
    to_engineering,
    to_raw,
)
from drivers.specs import BacnetPointSpec, ModbusPointSpec, OpcuaPointSpec

ORDERS = ("big", "little")
NUMERIC_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
STRUCT_FORMAT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
                 "float32": "f", "float64": "d"}
SCALINGS = [(1.0, 0.0), (0.1, 0.0), (0.01, 0.0), (0.001, 0.0), (10.0, 0.0), (0.5, -40.0), (0.1, -273.15),
            (1.0, 100.0), (-1.0, 0.0)]


def point(data_type: str, word_order: str = "big", byte_order: str = "big", scale: float = 1.0,
          offset: float = 0.0, **extra) -> ModbusPointSpec:
    return ModbusPointSpec(id="p", unit="", function=extra.pop("function", "holding_register"), register=0,
                           data_type=data_type, word_order=word_order, byte_order=byte_order, scale=scale,
                           offset=offset, **extra)


# --------------------------------------------------------------------------- known layouts

@pytest.mark.parametrize(("word_order", "byte_order", "registers"), [
    ("big", "big", [0x4148, 0x0000]),  # ABCD, the Modbus default
    ("little", "big", [0x0000, 0x4148]),  # CDAB, "word swapped"
    ("big", "little", [0x4841, 0x0000]),  # BADC, "byte swapped"
    ("little", "little", [0x0000, 0x4841]),  # DCBA
])
def test_float32_layouts(word_order, byte_order, registers):
    codec = ModbusCodec.for_point(point("float32", word_order, byte_order))
    assert codec.encode(12.5) == registers
    assert codec.decode(registers) == 12.5


def test_int32_word_order_and_sign():
    assert ModbusCodec.for_point(point("int32")).decode([0xFFFF, 0xFFFE]) == -2
    assert ModbusCodec.for_point(point("int32", "little")).decode([0xFFFE, 0xFFFF]) == -2
    assert ModbusCodec.for_point(point("uint32", "little")).encode(0x12345678) == [0x5678, 0x1234]


def test_int64_and_float64_layouts():
    assert ModbusCodec.for_point(point("uint64")).encode(0x0102030405060708) == [0x0102, 0x0304, 0x0506, 0x0708]
    assert ModbusCodec.for_point(point("uint64", "little", "little")).encode(0x0102030405060708) == [
        0x0807, 0x0605, 0x0403, 0x0201]
    registers = list(struct.unpack(">4H", struct.pack(">d", -1.5)))
    assert ModbusCodec.for_point(point("float64")).decode(registers) == -1.5


def test_scale_offset_and_integer_results():
    temperature = ModbusCodec.for_point(point("int16", scale=0.1, offset=-40.0))
    assert temperature.encode(21.5) == [615]
    assert temperature.decode([615]) == pytest.approx(21.5)
    plain = ModbusCodec.for_point(point("uint16"))
    assert plain.decode([42]) == 42 and isinstance(plain.decode([42]), int)


def test_bit_fields():
    alarm = ModbusCodec.for_point(point("bool", bit=5))
    assert alarm.decode([0b100000]) is True
    assert alarm.decode([0b011111]) is False
    assert alarm.encode(True, current=[0b1]) == [0b100001]
    assert alarm.encode(False, current=[0xFFFF]) == [0xFFDF]
    flag = ModbusCodec.for_point(point("uint16", bit=15))
    assert flag.decode([0x8000]) == 1


def test_coils_and_discrete_inputs_are_single_bits():
    coil = ModbusCodec.for_point(point("bool", function="coil"))
    assert coil.register_count == 1 and coil.is_bit_table
    assert coil.decode([True]) is True
    assert coil.encode(False) == [0]


def test_states():
    codec = ModbusCodec.for_point(point("uint16", states={0: "off", 1: "on", 4: "fault"}))
    assert codec.decode([4]) == 4
    with pytest.raises(DecodeError):
        codec.decode([3])
    assert check_write(codec.point, "on") == 1
    with pytest.raises(LimitViolation):
        check_write(codec.point, 2)
    with pytest.raises(LimitViolation):
        check_write(codec.point, "broken")


def test_not_a_number_is_a_decode_error():
    codec = ModbusCodec.for_point(point("float32"))
    with pytest.raises(DecodeError):
        codec.decode([0x7FC0, 0x0000])
    with pytest.raises(DecodeError):
        codec.decode([0x4148])  # one register short


def test_unrepresentable_values_are_limit_violations():
    with pytest.raises(LimitViolation):
        ModbusCodec.for_point(point("uint16")).encode(-1)
    with pytest.raises(LimitViolation):
        ModbusCodec.for_point(point("int16", scale=0.1)).encode(4000.0)
    with pytest.raises(LimitViolation):
        ModbusCodec.for_point(point("float32")).encode(1e39)
    with pytest.raises(LimitViolation):
        ModbusCodec.for_point(point("float64", scale=0.001)).encode(1.7e306)
    with pytest.raises(LimitViolation):
        ModbusCodec.for_point(point("float32")).encode(math.nan)
    assert ModbusCodec.for_point(point("uint16")).encode(-5, saturate=True) == [0]


def test_limits():
    setpoint = point("int16", scale=0.1, min=-10, max=10)
    assert check_write(setpoint, 9.5) == 9.5
    with pytest.raises(LimitViolation):
        check_write(setpoint, 10.5)
    with pytest.raises(LimitViolation):
        check_write(setpoint, -11)
    with pytest.raises(LimitViolation):
        check_write(setpoint, math.nan)


def test_invalid_point_definitions_are_refused():
    with pytest.raises(ValueError):
        ModbusCodec.for_point(point("bool"))  # a bool in a register needs its bit
    with pytest.raises(ValueError):
        ModbusCodec.for_point(point("float32", bit=1))
    with pytest.raises(ValueError):
        ModbusCodec.for_point(point("int24"))


def test_engineering_helpers_serve_other_protocols():
    bacnet_mode = BacnetPointSpec(id="mode", unit="", object_type="multi-state-value", states={1: "auto", 2: "on"})
    assert to_engineering(bacnet_mode, 2) == 2
    with pytest.raises(DecodeError):
        to_engineering(bacnet_mode, 7)
    assert check_write(bacnet_mode, "auto") == 1
    opcua_temperature = OpcuaPointSpec(id="t", unit="°C", node_id="ns=0;i=1", min=5, max=30)
    assert to_engineering(opcua_temperature, 2150, scale=0.01) == pytest.approx(21.5)
    assert to_raw(21.5, scale=0.01) == pytest.approx(2150)
    assert to_engineering(opcua_temperature, True) is True
    with pytest.raises(LimitViolation):
        check_write(opcua_temperature, 31)
    with pytest.raises(DecodeError):
        to_engineering(opcua_temperature, math.inf)


# --------------------------------------------------------------------------- round trips

def _raw_values(data_type: str) -> st.SearchStrategy:
    if data_type == "float32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if data_type == "float64":
        return st.floats(allow_nan=False, allow_infinity=False)
    low, high = INTEGER_RANGE[data_type]
    return st.integers(low, high)


@st.composite
def registers_case(draw):
    data_type = draw(st.sampled_from(NUMERIC_TYPES))
    word_order = draw(st.sampled_from(ORDERS))
    byte_order = draw(st.sampled_from(ORDERS))
    return data_type, word_order, byte_order, draw(st.lists(st.integers(0, 0xFFFF), min_size=REGISTER_COUNT[
        data_type], max_size=REGISTER_COUNT[data_type]))


@settings(max_examples=400, deadline=None)
@given(registers_case())
def test_registers_round_trip_without_scaling(case):
    """Any register content that decodes to a finite value encodes back to the same registers."""
    data_type, word_order, byte_order, registers = case
    codec = ModbusCodec.for_point(point(data_type, word_order, byte_order))
    try:
        value = codec.decode(registers)
    except DecodeError:
        raw = codec.decode_raw(registers)
        assert isinstance(raw, float) and not math.isfinite(raw)
        return
    encoded = codec.encode(value)
    if data_type.startswith("float") and value == 0.0 and registers != encoded:
        # -0.0 == 0.0: either zero's bit pattern is a faithful encoding.
        assert codec.decode(encoded) == 0.0
        return
    assert encoded == registers


@settings(max_examples=600, deadline=None)
@given(data_type=st.sampled_from(NUMERIC_TYPES), word_order=st.sampled_from(ORDERS),
       byte_order=st.sampled_from(ORDERS), scaling=st.sampled_from(SCALINGS), data=st.data())
def test_engineering_values_round_trip(data_type, word_order, byte_order, scaling, data):
    """raw -> engineering -> raw is exact for integers (within float precision) and float32-exact for floats."""
    scale, offset = scaling
    codec = ModbusCodec.for_point(point(data_type, word_order, byte_order, scale, offset))
    raw = data.draw(_raw_values(data_type))
    if data_type in ("int64", "uint64") and (scale, offset) != (1.0, 0.0):
        # Scaled values are floats: 53 bits of mantissa is all the precision they carry.
        raw = max(min(raw, 2**50), -(2**50)) if data_type == "int64" else min(raw, 2**50)
    registers = list(struct.unpack(f">{codec.register_count}H", struct.pack(">" + STRUCT_FORMAT[data_type], raw)))
    if word_order == "little":
        registers.reverse()
    if byte_order == "little":
        registers = [((w & 0xFF) << 8) | (w >> 8) for w in registers]
    try:
        value = codec.decode(registers)
    except DecodeError:
        # Scaling can overflow a huge float to infinity: that is reported, not returned.
        assert data_type.startswith("float")
        return
    if data_type.startswith("int") or data_type.startswith("uint"):
        assert codec.encode(value) == registers
        return
    try:
        encoded = codec.encode(value)
    except LimitViolation:
        # Unscaling a value at the very top of the range may round past the largest float: refused.
        assert abs(raw) > (3.4e38 if data_type == "float32" else 1.79e308) / 1.0001
        return
    again = codec.decode_raw(encoded)
    if (scale, offset) == (1.0, 0.0):
        assert again == raw
    else:
        tolerance = 1e-6 if data_type == "float32" else 1e-12
        assert math.isclose(again, raw, rel_tol=tolerance, abs_tol=abs(offset / scale) * 1e-12 + 1e-300)


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(0, 15), register=st.integers(0, 0xFFFF), value=st.booleans())
def test_bit_writes_change_only_their_bit(bit, register, value):
    codec = ModbusCodec.for_point(point("bool", bit=bit))
    (written,) = codec.encode(value, current=[register])
    assert codec.decode([written]) is value
    assert written & ~(1 << bit) == register & ~(1 << bit)
