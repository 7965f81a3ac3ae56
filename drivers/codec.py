"""Raw wire values <-> engineering values, for every protocol, and Modbus registers <-> raw values.

Two layers:

* protocol-neutral: `to_engineering` turns a raw value read from a device (a register number, a
  BACnet present-value, an OPC-UA variant) into the point's engineering value (scale, offset,
  enumerated states); `check_write` validates a value before it is written (limits, state labels);
  `to_raw` is the inverse of `to_engineering`.
* Modbus: `ModbusCodec` packs and unpacks one point's 16-bit registers (or bit) for every data type,
  word order and byte order, with the scaling above.

State points carry the raw enumerated integer as their value; `states` maps it to a label.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.base import DecodeError, LimitViolation, Value
from drivers.specs import ModbusPointSpec, PointSpec

# 16-bit registers each Modbus data type occupies.
REGISTER_COUNT: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}

_STRUCT_CODE = {
    "bool": "H", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "float32": "f", "int64": "q", "uint64": "Q", "float64": "d",
}

INTEGER_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}

FLOAT32_MAX = 3.4028234663852886e38
BIT_FUNCTIONS = frozenset({"coil", "discrete_input"})
ORDERS = ("big", "little")


# --------------------------------------------------------------------------- protocol-neutral


def is_identity(scale: float, offset: float) -> bool:
    return scale == 1.0 and offset == 0.0


def to_engineering(point: PointSpec, raw: Value, *, scale: float = 1.0, offset: float = 0.0) -> Value:
    """Engineering value of a raw value: booleans and strings pass, states are checked, numbers scaled.

    Raises DecodeError for NaN/infinite numbers and for a state the point does not define.
    """
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, float) and not math.isfinite(raw):
        raise DecodeError(f"{point.id}: device sent {raw}", point_id=point.id)
    if point.states is not None:
        if raw != int(raw) or int(raw) not in point.states:
            raise DecodeError(f"{point.id}: state {raw} is not one of {sorted(point.states)}",
                              point_id=point.id)
        return int(raw)
    if is_identity(scale, offset):
        return raw
    value = raw * scale + offset
    if not math.isfinite(value):
        raise DecodeError(f"{point.id}: {raw} × {scale} + {offset} overflows", point_id=point.id)
    return value


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32 (21.3, not 21.299999237060547): what a device
    holding a float32 means."""
    packed = struct.pack("<f", value)
    for digits in (7, 8, 9):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return float(value)


def to_raw(value: Value, *, scale: float = 1.0, offset: float = 0.0) -> Value:
    """The inverse of `to_engineering`'s scaling (no rounding: the wire type decides that)."""
    if isinstance(value, bool | str) or is_identity(scale, offset):
        return value
    return (value - offset) / scale


def check_write(point: PointSpec, value: Value) -> Value:
    """The value to send for a write request: state labels become their raw value; limits enforced.

    Raises LimitViolation before anything reaches the device.
    """
    if isinstance(value, bool):
        return value
    if point.states is not None:
        if isinstance(value, str):
            for raw, label in point.states.items():
                if label == value:
                    return raw
            raise LimitViolation(f"{point.id}: unknown state {value!r}; states are {sorted(point.states.values())}",
                                 point_id=point.id)
        if value != int(value) or int(value) not in point.states:
            raise LimitViolation(f"{point.id}: {value} is not one of the states {sorted(point.states)}",
                                 point_id=point.id)
        return int(value)
    if isinstance(value, str):
        raise LimitViolation(f"{point.id}: a number is expected, not {value!r}", point_id=point.id)
    if isinstance(value, float) and not math.isfinite(value):
        raise LimitViolation(f"{point.id}: {value} is not a finite number", point_id=point.id)
    if point.min is not None and value < point.min:
        raise LimitViolation(f"{point.id}: {value} is below the minimum {point.min}", point_id=point.id)
    if point.max is not None and value > point.max:
        raise LimitViolation(f"{point.id}: {value} is above the maximum {point.max}", point_id=point.id)
    return value


# --------------------------------------------------------------------------- Modbus registers


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def words_from_bytes(data: bytes, word_order: str, byte_order: str) -> list[int]:
    """Big-endian bytes of a value -> the registers as the device lays them out."""
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    if byte_order == "little":
        words = [_swap(word) for word in words]
    if word_order == "little":
        words.reverse()
    return words


def bytes_from_words(registers: Sequence[int], word_order: str, byte_order: str) -> bytes:
    """The inverse of `words_from_bytes`."""
    words = list(registers)
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [_swap(word) for word in words]
    return struct.pack(f">{len(words)}H", *words)


RawReader = Callable[[bytes, int], int | float]
Decoder = Callable[[bytes, int], Value]


def raw_reader(data_type: str, word_order: str, byte_order: str) -> RawReader:
    """Reads one raw number from a block's bytes (registers as sent, big-endian) at a byte offset."""
    code = _STRUCT_CODE[data_type]
    count = REGISTER_COUNT[data_type]
    if count == 1 or word_order == byte_order:
        # ABCD is big-endian and DCBA little-endian as a whole: one unpack does it.
        unpack_from = struct.Struct(("<" if byte_order == "little" else ">") + code).unpack_from
        return lambda data, position: unpack_from(data, position)[0]
    words = struct.Struct(f">{count}H")
    number = struct.Struct(">" + code)

    def mixed(data: bytes, position: int) -> int | float:
        return number.unpack(bytes_from_words(words.unpack_from(data, position), word_order, byte_order))[0]

    return mixed


@dataclass(frozen=True, slots=True)
class ModbusCodec:
    """Packs and unpacks one Modbus point; built once per point so polling does no lookups.

    `decode_at(data, position)` reads the point straight from a whole block's bytes, which is how the
    driver decodes a poll without slicing registers point by point.
    """

    point: ModbusPointSpec
    register_count: int
    is_bit_table: bool
    decode_at: Decoder
    _raw_at: RawReader
    _struct: struct.Struct

    @classmethod
    def for_point(cls, point: ModbusPointSpec) -> ModbusCodec:
        data_type = point.data_type
        if data_type not in REGISTER_COUNT:
            raise ValueError(f"{point.id}: unknown data type {data_type!r}")
        if point.word_order not in ORDERS or point.byte_order not in ORDERS:
            raise ValueError(f"{point.id}: word and byte order are 'big' or 'little'")
        is_bit_table = point.function in BIT_FUNCTIONS
        if point.bit is not None and not 0 <= point.bit <= 15:
            raise ValueError(f"{point.id}: bit {point.bit} is outside 0-15")
        if data_type == "bool" and not is_bit_table and point.bit is None:
            raise ValueError(f"{point.id}: a bool in a register needs its bit")
        if point.bit is not None and (is_bit_table or data_type not in ("bool", "int16", "uint16")):
            raise ValueError(f"{point.id}: bit applies to a 16-bit register only")
        count = 1 if is_bit_table else REGISTER_COUNT[data_type]
        raw_at = raw_reader(data_type, point.word_order, point.byte_order)
        return cls(point, count, is_bit_table, _decoder(point, raw_at), raw_at,
                   struct.Struct(">" + _STRUCT_CODE[data_type]))

    # ------------------------------------------------------------------ decode

    def decode_raw(self, registers: Sequence[int]) -> int | float:
        """The raw number held in this point's registers (bits are not extracted here)."""
        return self._raw_at(struct.pack(f">{len(registers)}H", *registers), 0)

    def decode(self, registers: Sequence[int]) -> Value:
        """Engineering value from exactly `register_count` registers (or one bit for coils/inputs)."""
        if len(registers) != self.register_count:
            raise DecodeError(f"{self.point.id}: expected {self.register_count} registers, got {len(registers)}",
                              point_id=self.point.id)
        if self.is_bit_table:
            return bool(registers[0])
        return self.decode_at(struct.pack(f">{len(registers)}H", *registers), 0)

    # ------------------------------------------------------------------ encode

    def raw_for(self, value: Value, *, saturate: bool = False) -> int | float:
        """The raw number that represents an engineering value in this point's wire type.

        Raises LimitViolation when the value cannot be represented, unless `saturate` (simulated
        devices saturate like real meters do).
        """
        point = self.point
        if isinstance(value, str):
            raise LimitViolation(f"{point.id}: a number is expected, not {value!r}", point_id=point.id)
        raw = to_raw(value, scale=point.scale, offset=point.offset)
        data_type = point.data_type
        if data_type in ("float32", "float64"):
            raw = float(raw)
            if math.isnan(raw):
                if not saturate:
                    raise LimitViolation(f"{point.id}: {value} is not a number", point_id=point.id)
                return raw  # meters send NaN for "not available"; simulated ones may too
            largest = FLOAT32_MAX if data_type == "float32" else sys.float_info.max
            if abs(raw) > largest:
                # Unscaling can overflow too (a huge value divided by a small scale).
                if not saturate:
                    raise LimitViolation(f"{point.id}: {value} does not fit a {data_type}", point_id=point.id)
                raw = math.copysign(largest, raw)
            return raw
        if isinstance(raw, float) and not math.isfinite(raw):
            raise LimitViolation(f"{point.id}: {value} is not a finite number", point_id=point.id)
        number = round(raw)
        low, high = (0, 1) if point.bit is not None or data_type == "bool" else INTEGER_RANGE[data_type]
        if not low <= number <= high:
            if not saturate:
                raise LimitViolation(f"{point.id}: {value} does not fit a {data_type} (raw {number})",
                                     point_id=point.id)
            number = min(high, max(low, number))
        return number

    def encode(self, value: Value, *, current: Sequence[int] | None = None, saturate: bool = False) -> list[int]:
        """Registers (or one 0/1 for coils) holding `value`.

        For a bit of a register, `current` is the register as it is now: the other bits are kept.
        """
        point = self.point
        if self.is_bit_table:
            return [1 if value else 0]
        if point.bit is not None:
            bit = bool(value) if isinstance(value, bool) else bool(self.raw_for(value, saturate=saturate))
            register = current[0] if current else 0
            mask = 1 << point.bit
            return [(register | mask) if bit else (register & ~mask & 0xFFFF)]
        raw = self.raw_for(value, saturate=saturate)
        data = self._struct.pack(raw)
        return words_from_bytes(data, point.word_order, point.byte_order)


def _decoder(point: ModbusPointSpec, raw_at: RawReader) -> Decoder:
    """The fastest correct decoder for this point's type, layout and scaling."""
    scale, offset = point.scale, point.offset
    if point.function in BIT_FUNCTIONS:
        return lambda data, position: bool(data[position + 1])
    if point.bit is not None or point.states is not None:
        bit = point.bit

        def general(data: bytes, position: int) -> Value:
            raw = raw_at(data, position)
            if bit is not None:
                raw = (int(raw) >> bit) & 1
                if point.data_type == "bool":
                    return bool(raw)
            return to_engineering(point, raw, scale=scale, offset=offset)

        return general
    isfinite = math.isfinite
    if point.data_type.startswith("float") and is_identity(scale, offset):
        def plain_float(data: bytes, position: int) -> Value:
            value = raw_at(data, position)
            if not isfinite(value):
                raise DecodeError(f"{point.id}: device sent {value}", point_id=point.id)
            return value

        return plain_float
    if point.data_type.startswith("float"):
        def floating(data: bytes, position: int) -> Value:
            value = raw_at(data, position) * scale + offset
            if not isfinite(value):
                raise DecodeError(f"{point.id}: device sent {raw_at(data, position)} (× {scale} + {offset})",
                                  point_id=point.id)
            return value

        return floating
    if is_identity(scale, offset):
        return raw_at
    return lambda data, position: raw_at(data, position) * scale + offset


def decode_point(point: ModbusPointSpec, registers: Sequence[int]) -> Value:
    """One-off decode (pollers keep a `ModbusCodec` per point instead)."""
    return ModbusCodec.for_point(point).decode(registers)


def encode_point(point: ModbusPointSpec, value: Value, *, current: Sequence[int] | None = None) -> list[int]:
    """One-off encode, without the limits check (see `check_write`)."""
    return ModbusCodec.for_point(point).encode(value, current=current)
