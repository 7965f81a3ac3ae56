"""OPC-UA read throughput: gridctl's driver against a hand-written asyncua client, same server, same run.

A simulated server with 500 Double variables runs in another process (`python -m sim.opcua_server
--points 500`). Both clients read every value again and again, taking turns poll by poll:
- gridctl: `OpcuaDriver.read()` (namespace resolved by URI, one batched Read, values type-checked into
  timestamped readings with a quality);
- raw: asyncua's `UaClient.read` with one ReadRequest for all 500 Value attributes, built once by hand.
Reported: points read per second for each, their ratio, and requests per poll for gridctl, the raw client
and per-point polling (one Read per node). `python bench/drivers_opcua.py` prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from asyncua import Client, ua  # noqa: E402

from drivers.base import Quality  # noqa: E402
from drivers.opcua import OpcuaDriver  # noqa: E402
from drivers.opcua_codec import parse_node_id  # noqa: E402
from sim.opcua_server import bench_spec  # noqa: E402

POINTS = 500


async def _start_server(points: int) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim.opcua_server", "--points", str(points), cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if not line:
        raise RuntimeError(f"simulated server did not start: {(await process.stderr.read()).decode()}")
    return process, json.loads(line)["endpoint"]


async def _alternate(first: Callable[[], Awaitable[None]], second: Callable[[], Awaitable[None]],
                     duration_s: float) -> tuple[int, float, float]:
    """Poll with each client in turn, poll by poll, so load from elsewhere hits both alike.

    Returns the number of polls each made and the seconds each spent polling.
    """
    polls = 0
    first_s = second_s = 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < duration_s:
        mark = time.perf_counter()
        await first()
        middle = time.perf_counter()
        await second()
        first_s += middle - mark
        second_s += time.perf_counter() - middle
        polls += 1
    return polls, first_s, second_s


async def _run(duration_s: float, rounds: int, points: int) -> dict[str, Any]:
    process, endpoint = await _start_server(points)
    driver: OpcuaDriver | None = None
    raw = Client(endpoint, timeout=5.0)
    try:
        spec = bench_spec(endpoint, points)
        driver = OpcuaDriver(spec)
        await driver.connect()
        await raw.connect()
        namespaces = await raw.get_namespace_array()
        params = ua.ReadParameters(
            TimestampsToReturn=ua.TimestampsToReturn.Neither,
            NodesToRead=[ua.ReadValueId(NodeId=parse_node_id(point.node_id).resolve(namespaces),
                                        AttributeId=ua.AttributeIds.Value) for point in spec.points])
        raw_requests = 0

        async def raw_poll() -> None:
            nonlocal raw_requests
            raw_requests += 1
            values = await raw.uaclient.read(params)
            if len(values) != points or not all(value.StatusCode.is_good() for value in values):
                raise RuntimeError("raw client read a value that was not good")

        async def gridctl_poll() -> None:
            assert driver is not None
            readings = await driver.read()
            if len(readings) != points or any(reading.quality is not Quality.GOOD for reading in readings):
                raise RuntimeError("gridctl read a point that was not good")

        # Warm both paths before timing.
        await raw_poll()
        await gridctl_poll()
        requests_before = driver.read_requests
        raw_requests = 0
        gridctl_rates, raw_rates = [], []
        polls_total = 0
        for round_index in range(rounds):
            # Who goes first alternates too, so neither always polls a server just woken up.
            if round_index % 2 == 0:
                polls, gridctl_s, raw_s = await _alternate(gridctl_poll, raw_poll, duration_s)
            else:
                polls, raw_s, gridctl_s = await _alternate(raw_poll, gridctl_poll, duration_s)
            polls_total += polls
            gridctl_rates.append(polls * points / gridctl_s)
            raw_rates.append(polls * points / raw_s)
        gridctl_rate = statistics.median(gridctl_rates)
        raw_rate = statistics.median(raw_rates)
        return {
            "benchmark": "drivers_opcua",
            "points": points,
            "rounds": rounds,
            "round_duration_s": duration_s,
            "gridctl_points_per_s": round(gridctl_rate, 1),
            "raw_asyncua_points_per_s": round(raw_rate, 1),
            "ratio_gridctl_to_raw": round(gridctl_rate / raw_rate, 3),
            "polls_per_client": polls_total,
            "gridctl_requests_per_poll": (driver.read_requests - requests_before) / polls_total,
            "raw_requests_per_poll": raw_requests / polls_total,
            "per_point_requests_per_poll": points,
            "gridctl_rates": [round(rate, 1) for rate in gridctl_rates],
            "raw_rates": [round(rate, 1) for rate in raw_rates],
        }
    finally:
        if driver is not None:
            await driver.close()
        try:
            await raw.disconnect()
        except Exception:  # the raw client may not have connected
            raw.disconnect_socket()
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.terminate()
                await process.wait()


def run(duration_s: float = 2.0, rounds: int = 3, points: int = POINTS) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    return asyncio.run(_run(duration_s, rounds, points))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round and client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", type=int, default=POINTS)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.duration, args.rounds, args.points)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
