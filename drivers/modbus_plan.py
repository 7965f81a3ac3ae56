"""Read planning: the fewest Modbus requests that cover a set of points.

Points of one function code are sorted by address and merged greedily into blocks: a point joins the
current block when the hole before it is at most `max_gap` addresses and the block stays within the
protocol's limit (125 registers, 2000 bits). Greedy merging in address order gives the minimum number
of requests for a given gap rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.codec import ModbusCodec

MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
FUNCTION_CODES = {"coil": 1, "discrete_input": 2, "holding_register": 3, "input_register": 4}
FUNCTION_ORDER = ("coil", "discrete_input", "holding_register", "input_register")


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: `count` addresses of `function` from `start`, and the points it carries."""

    function: str
    start: int
    count: int
    codecs: tuple[ModbusCodec, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.function]


def limit_for(function: str) -> int:
    return MAX_BITS_PER_READ if function in ("coil", "discrete_input") else MAX_REGISTERS_PER_READ


def plan_reads(codecs: Iterable[ModbusCodec], max_gap: int) -> list[ReadBlock]:
    """Blocks covering every point, in function then address order."""
    by_function: dict[str, list[ModbusCodec]] = {}
    for codec in codecs:
        by_function.setdefault(codec.point.function, []).append(codec)
    blocks: list[ReadBlock] = []
    for function in FUNCTION_ORDER:
        members = sorted(by_function.get(function, ()), key=lambda c: (c.point.register, c.register_count))
        limit = limit_for(function)
        current: list[ModbusCodec] = []
        start = end = 0
        for codec in members:
            first = codec.point.register
            last = first + codec.register_count
            if current and first - end <= max_gap and max(end, last) - start <= limit:
                current.append(codec)
                end = max(end, last)
                continue
            if current:
                blocks.append(ReadBlock(function, start, end - start, tuple(current)))
            current, start, end = [codec], first, last
        if current:
            blocks.append(ReadBlock(function, start, end - start, tuple(current)))
    return blocks


def single_point_blocks(block: ReadBlock) -> list[ReadBlock]:
    """The block split into one request per point (to find which address a device refuses)."""
    return [ReadBlock(block.function, c.point.register, c.register_count, (c,)) for c in block.codecs]
