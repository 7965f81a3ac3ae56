"""Helpers for the BACnet driver tests: serve simulated devices in this process or in another one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from drivers.bacnet import BacnetDriver
from drivers.base import Value
from drivers.health import Backoff
from drivers.specs import BacnetDeviceSpec, BacnetPointSpec
from sim.bacnet_server import BacnetSimServer, sim_device
from sim.core import SimDevice

REPO = Path(__file__).resolve().parents[2]
# Short timeouts keep fault tests fast; loopback answers in well under a millisecond.
FAST = {"timeout_s": 0.4, "retries": 0}


def fast_backoff() -> Backoff:
    return Backoff(initial_s=0.05, cap_s=0.2, jitter=0.0)


def at(spec: BacnetDeviceSpec, address: str, **changes: Any) -> BacnetDeviceSpec:
    return dataclasses.replace(spec, address=address, **changes)


@asynccontextmanager
async def served(spec: BacnetDeviceSpec, **server_options: Any
                 ) -> AsyncIterator[tuple[SimDevice, BacnetSimServer, BacnetDeviceSpec]]:
    """A SimDevice served on a free loopback port; yields it, its server and the spec at that address."""
    device = sim_device(spec)
    server = BacnetSimServer(device, **server_options)
    await server.start()
    try:
        yield device, server, at(spec, server.address)
    finally:
        await server.stop()


@asynccontextmanager
async def connected(spec: BacnetDeviceSpec, **driver_options: Any) -> AsyncIterator[BacnetDriver]:
    driver = BacnetDriver(spec, **driver_options)
    try:
        yield driver
    finally:
        await driver.close()


def same_value(point: BacnetPointSpec, expected: Value, actual: Value | None) -> bool:
    """Equal as the device holds it: analog values are float32 on the wire."""
    if actual is None:
        return False
    if point.object_type.startswith("analog-"):
        return struct.pack("<f", float(expected)) == struct.pack("<f", float(actual))
    if point.object_type.startswith("binary-"):
        return bool(expected) == bool(actual)
    return int(expected) == int(actual)


def new_value(point: BacnetPointSpec, current: Value) -> Value:
    """A valid value for the point that differs from `current`."""
    if point.object_type.startswith("binary-"):
        return not bool(current)
    if point.object_type.startswith("multi-state-"):
        states = sorted(point.states) if point.states else [1, 2]
        others = [state for state in states if state != current]
        return others[len(others) // 2]
    low = point.min if point.min is not None else 0.0
    high = point.max if point.max is not None else low + 50.0
    candidate = round(low + (high - low) * 0.25, 1) + 0.5
    return candidate if candidate != current else candidate + 1.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail after a generous timeout."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        await asyncio.sleep(0.02)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    info: dict[str, Any]

    @property
    def address(self) -> str:
        return self.info["address"]

    @property
    def device_instance(self) -> int:
        return self.info["device_instance"]


@asynccontextmanager
async def server_process(*args: str, startup_timeout_s: float = 30.0) -> AsyncIterator[ServerProcess]:
    """`python -m sim.bacnet_server ARGS` in another process; yields once it prints its address."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim.bacnet_server", *args, cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stderr is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), startup_timeout_s)
        except TimeoutError:
            line = b""
        if not line:
            process.kill()
            error = (await process.stderr.read()).decode(errors="replace")
            raise AssertionError(f"sim.bacnet_server {' '.join(args)} did not start:\n{error}")
        yield ServerProcess(process, json.loads(line))
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
