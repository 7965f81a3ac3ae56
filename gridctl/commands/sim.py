"""`gridctl sim up SITE`: serve every device of a site, simulated, over its real protocol on loopback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from gridctl.config import SiteError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sim", help="simulated devices of a site")
    commands = parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    up = commands.add_parser("up", help="serve every device of a site until Ctrl-C")
    up.add_argument("site", metavar="SITE", help="site folder or its site.yaml")
    up.add_argument("--port-offset", type=int, default=0, metavar="N",
                    help="add N to every port of the site (Modbus, BACnet and OPC-UA)")
    up.add_argument("--speed", type=float, default=1.0, metavar="X", help="simulated seconds per wall-clock second")
    up.add_argument("--seed", type=int, default=0, metavar="S", help="seed of weather, occupancy, EVs and loads")
    up.add_argument("--start", type=_instant, default=None, metavar="ISO",
                    help="simulated start time (ISO 8601 with an offset; default: now)")
    up.add_argument("--fault", action="append", default=[], metavar="DEVICE=KIND[:DELAY_S]",
                    help="make a device misbehave: offline, slow:<s>, silent, exception or garbage (repeatable)")
    up.set_defaults(func=run_up)


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give the time with its offset, e.g. 2026-01-15T08:00:00+01:00")
    return value.astimezone(UTC)


def _faults(texts: list[str]) -> dict[str, Any]:
    from sim.core import Fault, FaultKind

    faults: dict[str, Fault] = {}
    for text in texts:
        device_id, _, spec = text.partition("=")
        kind, _, delay = spec.partition(":")
        try:
            faults[device_id] = Fault(FaultKind(kind), float(delay) if delay else 0.0)
        except ValueError:
            kinds = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"--fault {text!r}: expected DEVICE=KIND[:DELAY_S] with KIND one of {kinds}") from None
    return faults


def run_up(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        print("gridctl sim up: --speed must be positive", file=sys.stderr)
        return 2
    try:
        args.faults = _faults(args.fault)
    except ValueError as exc:
        print(f"gridctl sim up: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_up(args))
    except SiteError as exc:
        print(f"gridctl sim up: {args.site} is not a valid site:\n{exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"gridctl sim up: {exc}", file=sys.stderr)
        return 1


async def _up(args: argparse.Namespace) -> int:
    from sim.core import SimClock
    from sim.site import SiteSimulation

    clock = SimClock(args.start or datetime.now(UTC), speed=args.speed)
    simulation = SiteSimulation(args.site, clock, seed=args.seed, port_offset=args.port_offset)
    for device_id, fault in args.faults.items():
        if device_id not in simulation.devices:
            raise ValueError(f"--fault: {simulation.site.id} has no device {device_id!r}")
        simulation.inject_fault(device_id, fault)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        listeners = await simulation.start()
        for listener in listeners:
            print(f"{listener.protocol:<7} {listener.address:<48} {' '.join(listener.device_ids)}")
        for device_id, fault in args.faults.items():
            print(f"fault   {device_id}: {fault.kind.value}" + (f" {fault.delay_s:g} s" if fault.delay_s else ""))
        device_count = sum(len(listener.device_ids) for listener in listeners)
        print(f"ready: {simulation.site.id}, {device_count} devices on {len(listeners)} servers, "
              f"simulated time {clock.now().isoformat(timespec='seconds')} ×{args.speed:g}; Ctrl-C stops", flush=True)
        await stop.wait()
    finally:
        await simulation.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
    print("stopped", flush=True)
    return 0
