"""Modbus read throughput: gridctl's driver against a hand-written pymodbus client, same device, same run.

A simulated device with 1,000 registers in scattered blocks (input and holding registers, several data
types, some blocks longer than one request may carry) runs in another process. Both clients read every
point again and again, poll for poll in turn (so both see the same load on the machine):
- gridctl: `ModbusDriver.read()` (requests planned from the point list, values decoded into timestamped
  readings with a quality);
- raw: pymodbus's `AsyncModbusTcpClient` with the fewest requests, worked out by hand from the device's
  block layout, each point decoded with pymodbus's `convert_from_registers`.
Reported: points read per second for each, their ratio, and requests per poll for gridctl, the raw client and
per-point polling (one request per point). `python bench/drivers_modbus.py` prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

THIS_FILE = Path(__file__).resolve()
REPO = THIS_FILE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from drivers.base import Quality  # noqa: E402
from drivers.modbus import ModbusDriver  # noqa: E402
from drivers.modbus_endpoint import EndpointPool  # noqa: E402
from drivers.specs import ModbusDeviceSpec, ModbusPointSpec  # noqa: E402

REGISTERS = 1000
UNIT_ID = 1
MAX_PER_REQUEST = 125
TYPES = (("uint16", 1), ("int16", 1), ("float32", 2), ("uint32", 2), ("int32", 2), ("float64", 4))
TYPE_WEIGHTS = (3, 2, 4, 2, 2, 1)


def bench_layout(seed: int = 7) -> tuple[list[ModbusPointSpec], list[tuple[str, int, int]]]:
    """The device's points and its blocks (function, start, length): 1,000 registers, scattered."""
    rng = random.Random(seed)
    points: list[ModbusPointSpec] = []
    blocks: list[tuple[str, int, int]] = []
    next_free = {"input_register": 0, "holding_register": 0}
    remaining = REGISTERS
    while remaining > 0:
        function = rng.choice(("input_register", "input_register", "holding_register"))
        # Mostly ordinary blocks, now and then one longer than a request can carry.
        length = min(remaining, rng.choice((rng.randint(20, 100), rng.randint(130, 240))))
        start = next_free[function] + rng.randint(40, 400)
        address, end = start, start + length
        while address < end:
            data_type, size = rng.choices(TYPES, TYPE_WEIGHTS)[0]
            if address + size > end:
                data_type, size = "uint16", 1
            points.append(ModbusPointSpec(
                id=f"{function[0]}{address}", unit="", function=function, register=address, data_type=data_type,
                word_order=rng.choice(("big", "big", "little")), scale=rng.choice((1.0, 0.1, 0.01))))
            address += size
        blocks.append((function, start, length))
        next_free[function] = end
        remaining -= length
    return points, blocks


def bench_spec(port: int) -> ModbusDeviceSpec:
    points, _ = bench_layout()
    return ModbusDeviceSpec(id="bench-meter", host="127.0.0.1", port=port, unit_id=UNIT_ID, timeout_s=5.0, retries=0,
                            max_gap_registers=8, points=tuple(points))


def bench_values(points: list[ModbusPointSpec]) -> dict[str, float]:
    rng = random.Random(11)
    values = {}
    for point in points:
        if point.data_type.startswith("float"):
            values[point.id] = round(rng.uniform(-500, 500), 3)
        else:
            high = 30000 if point.data_type in ("int16", "uint16") else 2_000_000
            low = 0 if point.data_type.startswith("u") else -high
            values[point.id] = rng.randint(low, high) * point.scale
    return values


def hand_requests(points: list[ModbusPointSpec], blocks: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """The fewest requests for each block: cut before the point that would not fit in 125 registers."""
    sizes = {"uint16": 1, "int16": 1, "float32": 2, "uint32": 2, "int32": 2, "float64": 4}
    requests = []
    for function, start, length in blocks:
        inside = sorted((p.register, sizes[p.data_type]) for p in points
                        if p.function == function and start <= p.register < start + length)
        first = start
        for register, size in inside:
            if register + size - first > MAX_PER_REQUEST:
                requests.append((function, first, register - first))
                first = register
        requests.append((function, first, start + length - first))
    return requests


# --------------------------------------------------------------------------- the device, in its own process

async def _serve() -> None:
    from sim.core import SimDevice, WallClock
    from sim.modbus_server import SimModbusServer

    spec = bench_spec(0)
    device = SimDevice(spec, WallClock(), bench_values(list(spec.points)))
    async with SimModbusServer([device]) as server:
        print(json.dumps({"port": server.port}), flush=True)
        # Serve until the parent closes stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _start_device() -> tuple[asyncio.subprocess.Process, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(THIS_FILE), "--serve", cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if not line:
        raise RuntimeError(f"simulated device did not start: {(await process.stderr.read()).decode()}")
    return process, json.loads(line)["port"]


# --------------------------------------------------------------------------- the two clients

async def _gridctl_poll(driver: ModbusDriver) -> int:
    readings = await driver.read()
    if readings[0].quality is not Quality.GOOD:
        raise RuntimeError(f"bench device failed: {readings[0].error}")
    return len(readings)


async def _raw_poll(client: AsyncModbusTcpClient, requests: list[tuple[str, int, int, list[tuple]]]) -> int:
    convert = client.convert_from_registers
    values = []
    for function, start, count, decoders in requests:
        if function == "input_register":
            response = await client.read_input_registers(start, count=count, device_id=UNIT_ID)
        else:
            response = await client.read_holding_registers(start, count=count, device_id=UNIT_ID)
        registers = response.registers
        for offset, data_type, size, word_order, scale in decoders:
            values.append(convert(registers[offset:offset + size], data_type, word_order) * scale)
    return len(values)


async def _round(driver: ModbusDriver, client: AsyncModbusTcpClient, raw_requests: list[tuple[str, int, int, list]],
                 duration_s: float) -> dict[str, float]:
    """Raw and gridctl polls taken in turn, so both see the same load on the machine."""
    totals = {"gridctl_s": 0.0, "raw_s": 0.0, "gridctl_points": 0, "raw_points": 0}
    clock = time.perf_counter
    while totals["gridctl_s"] + totals["raw_s"] < 2 * duration_s:
        started = clock()
        totals["raw_points"] += await _raw_poll(client, raw_requests)
        middle = clock()
        totals["gridctl_points"] += await _gridctl_poll(driver)
        totals["raw_s"] += middle - started
        totals["gridctl_s"] += clock() - middle
    return totals


def _raw_decoders(client: AsyncModbusTcpClient, points: list[ModbusPointSpec],
                  requests: list[tuple[str, int, int]]) -> list[tuple[str, int, int, list]]:
    kinds = {"uint16": (client.DATATYPE.UINT16, 1), "int16": (client.DATATYPE.INT16, 1),
             "float32": (client.DATATYPE.FLOAT32, 2), "uint32": (client.DATATYPE.UINT32, 2),
             "int32": (client.DATATYPE.INT32, 2), "float64": (client.DATATYPE.FLOAT64, 4)}
    planned = []
    for function, start, count in requests:
        decoders = []
        for point in points:
            if point.function == function and start <= point.register < start + count:
                data_type, size = kinds[point.data_type]
                decoders.append((point.register - start, data_type, size, point.word_order, point.scale))
        planned.append((function, start, count, decoders))
    return planned


async def _run(duration_s: float, rounds: int) -> dict[str, Any]:
    process, port = await _start_device()
    try:
        points, blocks = bench_layout()
        requests = hand_requests(points, blocks)
        driver = ModbusDriver(bench_spec(port), pool=EndpointPool())
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
        await client.connect()
        raw_requests = _raw_decoders(client, points, requests)
        await driver.connect()
        # Warm up both paths (plans built, connections settled).
        await _round(driver, client, raw_requests, 0.2)
        gridctl_rates, raw_rates, ratios = [], [], []
        for _ in range(rounds):
            totals = await _round(driver, client, raw_requests, duration_s)
            gridctl_rates.append(totals["gridctl_points"] / totals["gridctl_s"])
            raw_rates.append(totals["raw_points"] / totals["raw_s"])
            ratios.append(gridctl_rates[-1] / raw_rates[-1])
        sent_before = driver.endpoint.requests_sent
        await driver.read()
        gridctl_requests = driver.endpoint.requests_sent - sent_before
        client.close()
        await driver.close()
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
    gridctl_rate = statistics.median(gridctl_rates)
    raw_rate = statistics.median(raw_rates)
    return {
        "bench": "drivers_modbus",
        "registers": REGISTERS,
        "points": len(points),
        "blocks": len(blocks),
        "gridctl_points_per_s": round(gridctl_rate),
        "raw_points_per_s": round(raw_rate),
        "ratio": round(statistics.median(ratios), 3),
        "gridctl_requests_per_poll": gridctl_requests,
        "raw_requests_per_poll": len(requests),
        "per_point_requests_per_poll": len(points),
        "rounds": rounds,
        "round_s": duration_s,
    }


def run(duration_s: float = 2.0, rounds: int = 3) -> dict[str, Any]:
    """Measure both clients; returns the result (also what `__main__` prints)."""
    return asyncio.run(_run(duration_s, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round and client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    result = run(args.duration, args.rounds)
    print(f"gridctl {result['gridctl_points_per_s']} points/s with {result['gridctl_requests_per_poll']} requests "
          f"per poll; raw pymodbus {result['raw_points_per_s']} points/s with {result['raw_requests_per_poll']}; "
          f"per-point polling would need {result['per_point_requests_per_poll']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
