"""A whole simulated site: its devices, their physics and the protocol servers that expose them.

Built from the site description: one Modbus server per host:port (a gateway answering each unit id),
one BACnet application per device, one OPC-UA server per endpoint. `port_offset` moves every port,
so several copies (or tests) run side by side. The physics steps to the clock's time in the background
while the servers run, or on demand with `step()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers.factory import offset_ports
from drivers.specs import BacnetDeviceSpec, ModbusDeviceSpec, OpcuaDeviceSpec
from gridctl.config import Site, load_site
from gridctl.config.loader import site_file
from gridctl.config.models import BacnetDevice
from gridctl.fieldbus import device_spec
from sim.core import Clock, Fault, SimDevice
from sim.physics.district import DEFAULT_MAX_STEP, DistrictPhysics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    """Where one protocol server listens and which devices answer there."""

    protocol: str
    address: str
    device_ids: tuple[str, ...]


def build_devices(site: Site, clock: Clock, *, site_dir: Path | None = None,
                  port_offset: int = 0) -> dict[str, SimDevice]:
    """One SimDevice per device of the site, its ports moved by `port_offset`, with the watchdog the site
    declares (a BACnet device releases the priorities gridctl writes at)."""
    devices = {device.id: SimDevice(offset_ports(device_spec(device, site_dir), port_offset), clock)
               for device in site.devices}
    for device in site.devices:
        if device.watchdog is not None:
            priorities = frozenset({device.default_priority, *(p.priority for p in device.points if p.priority)}
                                   if isinstance(device, BacnetDevice) else ())
            devices[device.id].arm_watchdog(device.watchdog.point, device.watchdog.timeout_s, priorities)
    return devices


def site_ports(site: Site, port_offset: int = 0) -> list[tuple[str, int]]:
    """("tcp" | "udp", port) of every server the site's simulation listens on."""
    ports: set[tuple[str, int]] = set()
    for device in site.devices:
        spec = offset_ports(device_spec(device), port_offset)
        if isinstance(spec, ModbusDeviceSpec):
            ports.add(("tcp", spec.port))
        elif isinstance(spec, BacnetDeviceSpec):
            ports.add(("udp", int(spec.address.rpartition(":")[2])))
        elif isinstance(spec, OpcuaDeviceSpec):
            ports.add(("tcp", urlsplit(spec.endpoint).port or 4840))
    return sorted(ports)


def port_free(kind: str, port: int) -> bool:
    """Whether a "tcp" or "udp" port is free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ports_free(offset: int, *sites: Site) -> bool:
    """Whether every port of the sites, moved by `offset`, is free on loopback right now."""
    return all(port_free(kind, port + offset) for site in sites for kind, port in site_ports(site))


def free_port_offset(*sites: Site, rng: random.Random | None = None, attempts: int = 200) -> int:
    """An offset that moves every port of the sites onto loopback ports free right now (for side-by-side
    simulations and tests; another process may still take one before it is bound)."""
    ports = [p for site in sites for _, p in site_ports(site)]
    lowest, highest = min(ports), max(ports)
    rng = rng or random.Random()
    for _ in range(attempts):
        offset = rng.randrange(1024 - lowest, 65535 - highest)
        if offset and ports_free(offset, *sites):
            return offset
    raise OSError(f"no offset puts every port of {', '.join(s.id for s in sites)} on free loopback ports")


class SiteSimulation:
    """The simulated devices of one site, their physics, their faults and their servers."""

    def __init__(self, site: Site | str | Path, clock: Clock, *, seed: int = 0, port_offset: int = 0,
                 max_step: timedelta = DEFAULT_MAX_STEP, instruments: bool = True, physics: bool = True) -> None:
        """Without `physics` the devices only serve their points (values set by hand or with `set`):
        thousands of them in one process, for load tests of the protocol side."""
        site_dir: Path | None = None
        if not isinstance(site, Site):
            site_dir = site_file(site).parent
            site = load_site(site)
        self.site = site
        self.clock = clock
        self.seed = seed
        self.port_offset = port_offset
        self.devices = build_devices(site, clock, site_dir=site_dir, port_offset=port_offset)
        # Without `instruments`, devices report the physics' true values and never drop out.
        self.physics = DistrictPhysics(site, self.devices, clock.now(), seed=seed, max_step=max_step,
                                       instruments=instruments) if physics else None
        self._servers: list[tuple[Listener, Any]] = []
        self._stepper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ physics

    def step(self, now: datetime | None = None) -> None:
        """Advance the physics to `now` (the clock's time by default)."""
        if self.physics is not None:
            self.physics.step(now if now is not None else self.clock.now())

    def state(self) -> dict[str, Any]:
        """The true state of the site, for KPIs and tests."""
        return self.physics.state() if self.physics is not None else {}

    def inject_fault(self, device_id: str, fault: Fault | None) -> None:
        """Make one device misbehave (None heals it); its protocol server honours the fault."""
        self.devices[device_id].fault = fault

    # ------------------------------------------------------------------ servers

    def _plan_servers(self) -> list[tuple[Listener, Any]]:
        from sim.bacnet_server import BacnetSimServer
        from sim.modbus_server import SimModbusServer
        from sim.opcua_server import OpcuaSimServer

        modbus: dict[tuple[str, int], list[SimDevice]] = defaultdict(list)
        opcua: dict[tuple[str, int], list[SimDevice]] = defaultdict(list)
        servers: list[tuple[Listener, Any]] = []
        for device in self.devices.values():
            spec = device.spec
            if isinstance(spec, ModbusDeviceSpec):
                modbus[(spec.host, spec.port)].append(device)
            elif isinstance(spec, OpcuaDeviceSpec):
                parts = urlsplit(spec.endpoint)
                opcua[(parts.hostname or "127.0.0.1", parts.port or 4840)].append(device)
            elif isinstance(spec, BacnetDeviceSpec):
                host, _, port = spec.address.rpartition(":")
                listener = Listener("bacnet", spec.address, (device.id,))
                servers.append((listener, BacnetSimServer(device, host=host, port=int(port))))
        for (host, port), devices in modbus.items():
            listener = Listener("modbus", f"{host}:{port}", tuple(d.id for d in devices))
            servers.append((listener, SimModbusServer(devices, host, port)))
        for (host, port), devices in opcua.items():
            endpoint = devices[0].spec.endpoint  # type: ignore[attr-defined]
            listener = Listener("opcua", endpoint, tuple(d.id for d in devices))
            servers.append((listener, OpcuaSimServer(devices, host=host, port=port)))
        order = {"modbus": 0, "bacnet": 1, "opcua": 2}
        return sorted(servers, key=lambda item: order[item[0].protocol])

    @property
    def listeners(self) -> list[Listener]:
        return [listener for listener, _ in self._servers]

    async def start(self, step_interval_s: float = 0.2) -> list[Listener]:
        """Start every protocol server of the site and the background physics; returns where each listens."""
        if self._servers:
            return self.listeners
        planned = self._plan_servers()
        try:
            for listener, server in planned:
                await server.start()
                self._servers.append((listener, server))
        except BaseException:
            await self.stop()
            raise
        if self.physics is not None:
            self._stepper = asyncio.create_task(self._run_physics(step_interval_s), name=f"sim physics {self.site.id}")
        return self.listeners

    async def stop(self) -> None:
        """Stop the physics and every server; idempotent."""
        stepper, self._stepper = self._stepper, None
        if stepper is not None:
            stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stepper
        servers, self._servers = self._servers, []
        for listener, server in reversed(servers):
            try:
                await server.stop()
            except Exception:  # one server failing to stop must not keep the others running
                log.exception("stopping the %s server at %s", listener.protocol, listener.address)

    async def __aenter__(self) -> SiteSimulation:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _run_physics(self, step_interval_s: float) -> None:
        while True:
            try:
                target = self.clock.now()
                # One physics step at a time, yielding in between: on a slow or busy machine the
                # catching up must not starve the service sharing this event loop.
                while self.physics.time < target:
                    self.step(min(target, self.physics.time + self.physics.max_step))
                    await asyncio.sleep(0)
            except Exception:
                log.exception("simulation step of %s failed", self.site.id)
                raise
            await asyncio.sleep(step_interval_s)
