"""`gridctl points read|write SITE ...`: read and write points over their real protocol.

`read` takes addresses `device/point` or whole devices; `write` takes one address and a value, refuses
a value outside the point's limits before any I/O, writes with read-back verification and prints
the read-back. `--port-offset` reaches a site served by `gridctl sim up --port-offset`.
Exit codes: 0 done (every reading good), 1 a device fault or a bad reading, 2 refused before any I/O
(unknown address, read-only point, value outside the limits).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.base import DriverError, LimitViolation, Override, Quality, Reading, Value
from drivers.codec import check_write
from drivers.factory import make_driver, offset_ports
from drivers.specs import BacnetDeviceSpec, DeviceSpec
from gridctl.config import Point, Site, SiteError, load_site
from gridctl.config.loader import site_file
from gridctl.fieldbus import device_spec

_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}
_RELINQUISH = {"null", "none", "relinquish"}


class UsageError(Exception):
    """Something wrong with the command line, said in one sentence; nothing was sent."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("points", help="read and write points over their protocol")
    commands = parser.add_subparsers(dest="points_command", metavar="ACTION", required=True)

    read = commands.add_parser("read", help="read points (device/point) or whole devices",
                               epilog="exit code 0 when every reading is good, 1 otherwise, 2 for a usage error")
    read.add_argument("site", metavar="SITE", help="site folder or its site.yaml")
    read.add_argument("addresses", nargs="+", metavar="ADDRESS", help="device/point, or device for all its points")
    read.add_argument("--json", action="store_true", help="print the readings as JSON")
    _common(read)
    read.set_defaults(func=run_read)

    write = commands.add_parser("write", help="write one point, verify by reading back",
                                epilog="exit code 0 when written and read back, 1 on a device error, "
                                       "2 when refused before any I/O (e.g. outside the point's limits)")
    write.add_argument("site", metavar="SITE", help="site folder or its site.yaml")
    write.add_argument("address", metavar="ADDRESS", help="device/point")
    write.add_argument("value", metavar="VALUE",
                       help="a number, true/false, a state label, or 'relinquish' (BACnet, with --priority)")
    write.add_argument("--priority", type=int, default=None, metavar="N",
                       help="BACnet priority 1-16 (default: the point's, else the device's)")
    write.add_argument("--json", action="store_true", help="print the result as JSON")
    _common(write)
    write.set_defaults(func=run_write)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port-offset", type=int, default=0, metavar="N",
                        help="add N to every port of the site (as given to gridctl sim up)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds to wait for each answer (default: each device's timeout_s)")


@dataclass(frozen=True)
class _Target:
    spec: DeviceSpec
    points: list[Point]


def _load(site_path: str) -> tuple[Site, Path]:
    return load_site(site_path), site_file(site_path).parent


def _targets(site: Site, site_dir: Path, addresses: Sequence[str], port_offset: int,
             timeout_s: float | None = None) -> list[_Target]:
    """Group the requested points by device, in the order asked, without duplicates."""
    wanted: dict[str, list[Point]] = {}
    for address in addresses:
        device_id, _, point_id = address.partition("/")
        try:
            device = site.device(device_id)
        except KeyError:
            raise UsageError(f"{site.id} has no device {device_id!r}") from None
        points = device.points if not point_id else [p for p in device.points if p.id == point_id]
        if not points:
            known = ", ".join(p.id for p in device.points)
            raise UsageError(f"device {device_id} has no point {point_id!r}; its points: {known}")
        chosen = wanted.setdefault(device_id, [])
        chosen.extend(p for p in points if p not in chosen)
    if timeout_s is not None and timeout_s <= 0:
        raise UsageError("--timeout must be positive")
    targets = []
    for device_id, points in wanted.items():
        spec = offset_ports(device_spec(site.device(device_id), site_dir), port_offset)
        if timeout_s is not None:
            spec = dataclasses.replace(spec, timeout_s=timeout_s)
        targets.append(_Target(spec, points))
    return targets


def _label(point: Point, value: Value | None) -> str | None:
    if point.states is None or value is None or isinstance(value, str):
        return None
    return point.states.get(int(value))


def _format(value: Value | None, unit: str, label: str | None = None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value).lower() if isinstance(value, bool) else str(value)
    if label is not None:
        text = f"{text} ({label})"
    return f"{text} {unit}".rstrip()


# --------------------------------------------------------------------------- read


async def _read_device(target: _Target) -> list[Reading]:
    driver = make_driver(target.spec)
    point_ids = [p.id for p in target.points]
    try:
        await driver.connect()
        return list(await driver.read(point_ids))
    except DriverError as exc:
        now = datetime.now(UTC)
        return [Reading(f"{target.spec.id}/{pid}", now, None, Quality.BAD, f"{type(exc).__name__}: {exc}")
                for pid in point_ids]
    finally:
        await driver.close()


async def _read(targets: list[_Target]) -> list[tuple[Point, Reading]]:
    # Devices are read side by side; each driver keeps its own requests in order.
    results = await asyncio.gather(*(_read_device(t) for t in targets))
    out: list[tuple[Point, Reading]] = []
    for target, readings in zip(targets, results, strict=True):
        by_address = {r.address: r for r in readings}
        for point in target.points:
            out.append((point, by_address[f"{target.spec.id}/{point.id}"]))
    return out


def run_read(args: argparse.Namespace) -> int:
    try:
        site, site_dir = _load(args.site)
        targets = _targets(site, site_dir, args.addresses, args.port_offset, args.timeout)
    except (SiteError, UsageError, ValueError) as exc:
        print(f"gridctl points read: {exc}", file=sys.stderr)
        return 2
    results = asyncio.run(_read(targets))
    if args.json:
        print(json.dumps([_reading_json(site.id, point, reading) for point, reading in results], indent=2))
    else:
        # Addresses are unique within a site only: say which site they are of.
        print(f"site {site.id}")
        width = max(len(reading.address) for _, reading in results)
        for point, reading in results:
            value = _format(reading.value, point.unit, _label(point, reading.value))
            line = f"{reading.address:<{width}}  {value:<24} {reading.quality.value:<5}  {reading.ts.isoformat()}"
            if reading.error:
                line += f"  {reading.error}"
            print(line)
    return 0 if all(r.quality is Quality.GOOD for _, r in results) else 1


def _reading_json(site_id: str, point: Point, reading: Reading) -> dict[str, Any]:
    return {"site_id": site_id, "address": reading.address, "value": reading.value,
            "label": _label(point, reading.value), "unit": point.unit, "quality": reading.quality.value,
            "ts": reading.ts.isoformat(), "error": reading.error}


# --------------------------------------------------------------------------- write


def _parse_value(point: Point, text: str) -> Value | None:
    lowered = text.strip().lower()
    if lowered in _RELINQUISH:
        return None
    boolean = (getattr(point, "data_type", "") in ("bool", "Boolean")
               or getattr(point, "object_type", "").startswith("binary-")
               or getattr(point, "function", "") in ("coil", "discrete_input"))
    if boolean:
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UsageError(f"{point.id} takes true or false, not {text!r}")
    try:
        number = float(text)
    except ValueError:
        if point.states is not None:
            return text  # a state label; check_write maps it to its raw value
        raise UsageError(f"{point.id} takes a number, not {text!r}") from None
    return int(number) if number.is_integer() and (point.states is not None or "." not in text) else number


def _limits(point: Point) -> str:
    if point.states is not None:
        return "states " + ", ".join(f"{raw} ({label})" for raw, label in sorted(point.states.items()))
    low = "−∞" if point.min is None else f"{point.min:g}"
    high = "+∞" if point.max is None else f"{point.max:g}"
    return f"{low} .. {high} {point.unit}".rstrip()


async def _write(spec: DeviceSpec, point_id: str, value: Value | None, priority: int | None) -> Any:
    driver = make_driver(spec)
    try:
        await driver.connect()
        return await driver.write(point_id, value, priority=priority)
    finally:
        await driver.close()


def run_write(args: argparse.Namespace) -> int:
    try:
        site, site_dir = _load(args.site)
        if "/" not in args.address:
            raise UsageError(f"write needs one point, device/point, not {args.address!r}")
        (target,) = _targets(site, site_dir, [args.address], args.port_offset, args.timeout)
        (point,) = target.points
        spec_point = next(p for p in target.spec.points if p.id == point.id)  # type: ignore[attr-defined]
        if not point.writable:
            raise UsageError(f"{args.address} is read-only")
        is_bacnet = isinstance(target.spec, BacnetDeviceSpec)
        if args.priority is not None and not is_bacnet:
            raise UsageError("--priority applies to BACnet points only")
        if args.priority is not None and not 1 <= args.priority <= 16:
            raise UsageError(f"priority {args.priority} is outside 1..16")
        value = _parse_value(point, args.value)
        if value is None and not is_bacnet:
            raise UsageError(f"only BACnet points can be relinquished; {args.address} is not one")
    except (SiteError, UsageError, ValueError) as exc:
        print(f"gridctl points write: {exc}", file=sys.stderr)
        return 2
    if value is not None:
        try:
            check_write(spec_point, value)
        except LimitViolation:
            print(f"gridctl points write: refused: {args.value} is outside the limits of {args.address} "
                  f"({_limits(point)}); nothing was written", file=sys.stderr)
            return 2
    try:
        result = asyncio.run(_write(target.spec, point.id, value, args.priority))
    except Override as exc:
        print(f"gridctl points write: {args.address} is held at priority {exc.active_priority}, above ours: {exc}",
              file=sys.stderr)
        return 1
    except DriverError as exc:
        print(f"gridctl points write: {args.address}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"site_id": site.id, "address": result.address, "requested": result.requested,
                          "written": result.written, "read_back": result.read_back,
                          "label": _label(point, result.read_back), "unit": point.unit,
                          "priority": result.priority, "ts": result.ts.isoformat()}))
    else:
        at = f" at priority {result.priority}" if result.priority is not None else ""
        done = "relinquished" if result.written is None else f":= {_format(result.written, point.unit)}"
        print(f"{site.id} {result.address} {done}{at}; read back "
              f"{_format(result.read_back, point.unit, _label(point, result.read_back))} at {result.ts.isoformat()}")
    return 0
