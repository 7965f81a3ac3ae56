"""BACnet read throughput: gridctl's driver against a hand-written bacpypes3 client, same device, same run.

A simulated device with 200 analog inputs runs in another process (`python -m sim.bacnet_server --profile
bench`). Both clients poll every point again and again, taking turns poll by poll so both see the same load:
- gridctl: `BacnetDriver.read()` (ReadPropertyMultiple planned to fit the device's max APDU, decoded into
  timestamped readings with a quality);
- raw: bacpypes3's `read_property_multiple` with the fewest requests that fit the device's 1476-byte APDU,
  chunks worked out by hand for this device.
Reported: points read per second for each, their ratio, and requests per poll for gridctl, the raw client and
per-point polling (one ReadProperty per point, also timed for one round).
`python bench/drivers_bacnet.py` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bacpypes3.ipv4.app import NormalApplication  # noqa: E402
from bacpypes3.local.device import DeviceObject  # noqa: E402
from bacpypes3.pdu import IPv4Address  # noqa: E402

from drivers.bacnet import BacnetDriver  # noqa: E402
from drivers.bacnet_stack import bind_udp  # noqa: E402
from drivers.base import Quality  # noqa: E402
from sim.bacnet_server import bench_device  # noqa: E402

OBJECTS = 200
# A present-value item in a ReadPropertyMultiple answer is 16 bytes for a Real; the answer header is 3.
RAW_ITEMS_PER_REQUEST = (1476 - 3) // 16


async def _start_device(objects: int) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim.bacnet_server", "--profile", "bench", "--instance", "9001",
        "--objects", str(objects), cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if not line:
        raise RuntimeError(f"simulated device did not start: {(await process.stderr.read()).decode()}")
    return process, json.loads(line)


def _free_port() -> int:
    sock = bind_udp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


async def _timed(poll: Any) -> float:
    started = time.perf_counter()
    await poll()
    return time.perf_counter() - started


async def _alternating(first: Any, second: Any, duration_s: float) -> tuple[int, float, float]:
    """Poll with `first` then `second`, again and again, so both see the same load on a busy machine.

    Returns the number of polls each made and the seconds each spent polling."""
    polls, first_s, second_s = 0, 0.0, 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < duration_s:
        first_s += await _timed(first)
        second_s += await _timed(second)
        polls += 1
    return polls, first_s, second_s


async def _run(duration_s: float, rounds: int, objects: int) -> dict[str, Any]:
    process, info = await _start_device(objects)
    raw_app = None
    driver = None
    try:
        spec = bench_device(address=info["address"], instance=info["device_instance"], objects=objects)
        driver = BacnetDriver(spec)
        await driver.connect()

        raw_app = NormalApplication(
            DeviceObject(objectIdentifier=("device", 4194301), objectName="raw-bench", vendorIdentifier=999,
                         maxApduLengthAccepted=1476, segmentationSupported="no-segmentation"),
            IPv4Address(f"127.0.0.1:{_free_port()}"))
        object_ids = [f"analog-input,{point.instance}" for point in spec.points]
        raw_chunks = [object_ids[i:i + RAW_ITEMS_PER_REQUEST] for i in range(0, objects, RAW_ITEMS_PER_REQUEST)]
        raw_requests = 0

        async def raw_poll() -> None:
            nonlocal raw_requests
            values = []
            for chunk in raw_chunks:
                parameters: list[Any] = []
                for object_id in chunk:
                    parameters += [object_id, ["present-value"]]
                raw_requests += 1
                values += await raw_app.read_property_multiple(info["address"], parameters)
            if len(values) != objects:
                raise RuntimeError(f"raw client read {len(values)} values")

        async def per_point_poll() -> None:
            for object_id in object_ids:
                await raw_app.read_property(info["address"], object_id, "present-value")

        async def gridctl_poll() -> None:
            readings = await driver.read()
            if any(reading.quality is not Quality.GOOD for reading in readings):
                raise RuntimeError("gridctl read a point that was not good")

        # Warm both paths (socket set-up, first-use imports) before timing.
        await raw_poll()
        await gridctl_poll()
        driver_requests_before = driver.stats.read_property_multiple
        raw_requests = 0
        gridctl_rates, raw_rates = [], []
        gridctl_polls = raw_polls = 0
        for _ in range(rounds):
            polls, gridctl_s, raw_s = await _alternating(gridctl_poll, raw_poll, duration_s)
            gridctl_polls += polls
            raw_polls += polls
            gridctl_rates.append(polls * objects / gridctl_s)
            raw_rates.append(polls * objects / raw_s)
        # Per-point polling (a ReadProperty per point), for scale.
        per_point_polls, per_point_s = 0, 0.0
        started = time.perf_counter()
        while time.perf_counter() - started < duration_s:
            per_point_s += await _timed(per_point_poll)
            per_point_polls += 1
        per_point_rate = per_point_polls * objects / per_point_s
        gridctl_rate = statistics.median(gridctl_rates)
        raw_rate = statistics.median(raw_rates)
        gridctl_requests_per_poll = (driver.stats.read_property_multiple - driver_requests_before) / gridctl_polls
        return {
            "benchmark": "drivers_bacnet",
            "objects": objects,
            "rounds": rounds,
            "round_duration_s": duration_s,
            "gridctl_points_per_s": round(gridctl_rate, 1),
            "raw_bacpypes3_points_per_s": round(raw_rate, 1),
            "ratio_gridctl_to_raw": round(gridctl_rate / raw_rate, 3),
            "gridctl_requests_per_poll": gridctl_requests_per_poll,
            "raw_requests_per_poll": raw_requests / raw_polls,
            "minimal_requests_per_poll": math.ceil(objects / RAW_ITEMS_PER_REQUEST),
            "per_point_requests_per_poll": objects,
            "per_point_points_per_s": round(per_point_rate, 1),
            "device_max_apdu": driver.max_apdu,
            "gridctl_rates": [round(rate, 1) for rate in gridctl_rates],
            "raw_rates": [round(rate, 1) for rate in raw_rates],
        }
    finally:
        if driver is not None:
            await driver.close()
        if raw_app is not None:
            raw_app.close()
        if process.returncode is None:
            process.terminate()
            await process.wait()


def run(duration_s: float = 2.0, rounds: int = 3, objects: int = OBJECTS) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    return asyncio.run(_run(duration_s, rounds, objects))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round (both clients)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--objects", type=int, default=OBJECTS)
    args = parser.parse_args(argv)
    result = run(args.duration, args.rounds, args.objects)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
