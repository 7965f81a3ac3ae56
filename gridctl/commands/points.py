"""`gridctl points read|write SITE ...`: read and write points over their real protocol.

`read` takes addresses `device/point` or whole devices and prints every value at the precision the
device gives. `write` takes one address and a value, refuses a value outside the point's limits and
the BACnet priorities of life safety and operators (1-8, unless `--as-operator NAME` says who writes)
before any I/O, writes with read-back verification, and audits the write: always in its output, and
in the history database's write_audit table (`--db`, or the default database when it exists) through a
local write journal, as the service does: the intent is on disk before any I/O, and a database away at
that moment loses nothing (the record ships with the next write to that database).
`--port-offset` reaches a site served by `gridctl sim up --port-offset`. With `--json`, a failure is a
JSON object on stdout too.
Exit codes: 0 done (every reading good), 1 a device fault or a bad reading, 2 refused before any I/O
(unknown address, read-only point, value outside the limits, operator priority, audit database unusable).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.base import (
    DriverError,
    LimitViolation,
    NotCommandable,
    Override,
    Quality,
    Reading,
    Value,
    WriteMismatch,
    WriteResult,
    not_attempted,
)
from drivers.codec import check_write, shortest_float32
from drivers.factory import make_driver, offset_ports
from drivers.specs import BacnetDeviceSpec, DeviceSpec
from gridctl import paths
from gridctl.commands import _write_audit as audit
from gridctl.config import Point, Site, SiteError, load_site
from gridctl.config.checks import operator_priority_problem
from gridctl.config.loader import site_file
from gridctl.config.models import BacnetDevice, BacnetSettings
from gridctl.dispatch.audit import AuditEntry, Outcome
from gridctl.dispatch.journal import Action, Intent, JournalError, WriteJournal
from gridctl.fieldbus import device_spec

_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}
_RELINQUISH = {"null", "none", "relinquish"}
# Significant digits of a double that always survive a round trip through decimal.
_DOUBLE_DIGITS = 15


class UsageError(Exception):
    """Something wrong with the command line, said in one sentence; nothing was sent."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("points", help="read and write points over their protocol")
    commands = parser.add_subparsers(dest="points_command", metavar="ACTION", required=True)

    read = commands.add_parser("read", help="read points (device/point) or whole devices",
                               epilog="exit code 0 when every reading is good, 1 otherwise, 2 for a usage error")
    read.add_argument("site", metavar="SITE", help="site folder or its site.yaml")
    read.add_argument("addresses", nargs="+", metavar="ADDRESS", help="device/point, or device for all its points")
    read.add_argument("--json", action="store_true", help="print the readings (or the error) as JSON")
    _common(read)
    read.set_defaults(func=run_read)

    write = commands.add_parser("write", help="write one point, verify by reading back, audit",
                                epilog="exit code 0 when written and read back, 1 on a device error, "
                                       "2 when refused before any I/O (e.g. outside the point's limits)")
    write.add_argument("site", metavar="SITE", help="site folder or its site.yaml")
    write.add_argument("address", metavar="ADDRESS", help="device/point")
    write.add_argument("value", metavar="VALUE",
                       help="a number, true/false, a state label, or 'relinquish' (BACnet, with --priority)")
    write.add_argument("--priority", type=int, default=None, metavar="N",
                       help="BACnet priority 1-16 (default: the point's, else the device's); 1-8 belong to life "
                            "safety and operators and need --as-operator")
    write.add_argument("--as-operator", default=None, metavar="NAME",
                       help="the operator writing, by name: allows priorities 1-8 and is the audit's actor")
    write.add_argument("--reason", default="manual write from the command line", help="why, for the audit")
    write.add_argument("--db", default=None, metavar="DSN",
                       help="history database (SQLite path or PostgreSQL DSN) whose write_audit table gets the "
                            "audit (default: the embedded SQLite history when it exists)")
    write.add_argument("--json", action="store_true", help="print the result (or the error) as JSON")
    _common(write)
    write.set_defaults(func=run_write)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port-offset", type=int, default=0, metavar="N",
                        help="add N to every port of the site (as given to gridctl sim up)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds to wait for each answer (default: each device's timeout_s)")
    parser.add_argument("--bacnet-local-port", type=int, default=None, metavar="N",
                        help="UDP port to talk BACnet/IP from instead of the site's (0: any free port; for when "
                             "gridctl run holds the site's)")


@dataclass(frozen=True)
class _Target:
    spec: DeviceSpec
    points: list[Point]


def _load(site_path: str) -> tuple[Site, Path]:
    return load_site(site_path), site_file(site_path).parent


def _targets(site: Site, site_dir: Path, addresses: Sequence[str], args: argparse.Namespace) -> list[_Target]:
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
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    bacnet = site.bacnet
    if args.bacnet_local_port is not None:
        if not 0 <= args.bacnet_local_port <= 65535:
            raise UsageError("--bacnet-local-port must be within 0..65535")
        bacnet = BacnetSettings(local_address=bacnet.local_address, local_port=args.bacnet_local_port)
    targets = []
    for device_id, points in wanted.items():
        spec = offset_ports(device_spec(site.device(device_id), site_dir, bacnet=bacnet), args.port_offset)
        if args.timeout is not None:
            spec = dataclasses.replace(spec, timeout_s=args.timeout)
        targets.append(_Target(spec, points))
    return targets


def _label(point: Point, value: Value | None) -> str | None:
    if point.states is None or value is None or isinstance(value, str):
        return None
    return point.states.get(int(value))


def _is_float32(point: Point) -> bool:
    """A point whose wire value is a float32 read as is (its decimals past float32's are noise)."""
    return ((getattr(point, "data_type", None) == "float32" and getattr(point, "scale", 1.0) == 1.0
             and getattr(point, "offset", 0.0) == 0.0) or getattr(point, "data_type", None) == "Float")


def number_text(value: float, *, float32: bool = False) -> str:
    """A float with every digit it carries (9876543.21, not 9.87654e+06), without binary noise."""
    if float32:
        return repr(shortest_float32(value))
    return f"{value:.{_DOUBLE_DIGITS}g}"


def _format(value: Value | None, point: Point, label: str | None = None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = number_text(value, float32=_is_float32(point))
    else:
        text = str(value).lower() if isinstance(value, bool) else str(value)
    if label is not None:
        text = f"{text} ({label})"
    return f"{text} {point.unit}".rstrip()


def _fail(command: str, message: str, code: int, as_json: bool, **extra: Any) -> int:
    """Say why the command failed: on stderr, and as a JSON object on stdout with --json."""
    print(f"gridctl points {command}: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message, "exit_code": code, **extra}))
    return code


# --------------------------------------------------------------------------- read


async def _read_device(target: _Target) -> list[Reading]:
    driver = make_driver(target.spec)
    point_ids = [p.id for p in target.points]
    try:
        try:
            await driver.connect()
        except DriverError as exc:
            # The points' own requests were never sent.
            skipped = not_attempted(exc, target.spec.id)
            now = datetime.now(UTC)
            return [Reading(f"{target.spec.id}/{pid}", now, None, Quality.BAD, f"NotAttempted: {skipped}")
                    for pid in point_ids]
        return list(await driver.read(point_ids))
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
        targets = _targets(site, site_dir, args.addresses, args)
    except (SiteError, UsageError, ValueError) as exc:
        return _fail("read", str(exc), 2, args.json)
    try:
        results = asyncio.run(_read(targets))
    except (DriverError, OSError) as exc:
        return _fail("read", f"{type(exc).__name__}: {exc}", 1, args.json)
    if args.json:
        print(json.dumps([_reading_json(site.id, point, reading) for point, reading in results], indent=2))
    else:
        values = [_format(reading.value, point, _label(point, reading.value)) for point, reading in results]
        # Addresses are unique within a site only: say which site they are of.
        print(f"site {site.id}")
        width = max(len(reading.address) for _, reading in results)
        value_width = max(24, *(len(value) for value in values))
        for (_, reading), value in zip(results, values, strict=True):
            line = (f"{reading.address:<{width}}  {value:<{value_width}} {reading.quality.value:<5}  "
                    f"{reading.ts.isoformat()}")
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


@dataclass
class _Write:
    """One write asked for on the command line, and what became of it (the audit entry's content)."""

    site: Site
    address: str
    point: Point
    value: Value | None
    priority: int | None
    actor: str
    reason: str
    old: Value | None = None
    result: WriteResult | None = None
    # The journal record of the write, once its intent is on disk.
    seq: int | None = None

    def entry(self, outcome: Outcome, error: str | None = None) -> AuditEntry:
        result = self.result
        return AuditEntry(
            ts=result.ts if result is not None else datetime.now(UTC), site_id=self.site.id, address=self.address,
            actor=self.actor, reason=self.reason, schedule_id=None, policy_version=None, old_value=self.old,
            requested_value=self.value, written_value=result.written if result is not None else None,
            priority=result.priority if result is not None else self.priority, lease_until=None, outcome=outcome,
            read_back=result.read_back if result is not None else None, error=error, clamped=False, ramped=False,
            unit=self.point.unit, action=str(self.action(sent=self.seq is not None)),
        )

    def action(self, *, sent: bool) -> Action:
        if not sent:
            return Action.NOTE
        return Action.RELINQUISH if self.value is None else Action.WRITE

    def intent(self, *, sent: bool) -> Intent:
        """The journal's record of the write, before any I/O (`sent`: the device is about to be written)."""
        return Intent(ts=datetime.now(UTC), site_id=self.site.id, address=self.address, action=self.action(sent=sent),
                      actor=self.actor, reason=self.reason, unit=self.point.unit, old_value=self.old,
                      requested_value=self.value, written_value=self.value, priority=self.priority)


async def _journalled(spec: DeviceSpec, write: _Write, journal: WriteJournal | None) -> None:
    """Send the write with its intent journalled first, then its outcome; raises what the device raised."""
    outcome, error = Outcome.FAILED, None
    try:
        await _send(spec, write, journal)
        assert write.result is not None
        outcome = Outcome.RELINQUISHED if write.result.written is None else Outcome.WRITTEN
    except Override as exc:
        outcome, error = Outcome.OVERRIDE, str(exc)
        raise
    except WriteMismatch as exc:
        outcome, error = Outcome.MISMATCH, str(exc)
        raise
    except (NotCommandable, LimitViolation) as exc:
        outcome, error = Outcome.REJECTED, str(exc)
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if journal is not None and write.seq is not None:
            result = write.result
            await journal.outcome(write.seq, write.address, outcome, datetime.now(UTC),
                                  read_back=result.read_back if result is not None else None, error=error,
                                  carried=None if result is None else (result.written, result.priority))


async def _send(spec: DeviceSpec, write: _Write, journal: WriteJournal | None = None) -> None:
    """Read the value the point holds (for the audit), journal the intent, then write, read back and verify."""
    driver = make_driver(spec)
    try:
        await driver.connect()
        (before,) = await driver.read([write.point.id])
        if before.quality is Quality.GOOD:
            write.old = before.value
        if journal is not None:
            write.seq = await journal.intent(write.intent(sent=True))
        write.result = await driver.write(write.point.id, write.value, priority=write.priority)
    finally:
        await driver.close()


def _device_priority(site: Site, address: str, point: Point, asked: int | None) -> int | None:
    """The BACnet priority a write goes at: asked, else the point's, else the device's."""
    device = site.device(address.partition("/")[0])
    if not isinstance(device, BacnetDevice):
        return None
    return asked or getattr(point, "priority", None) or device.default_priority


def _login_name() -> str:
    """Who runs the command, as the system knows them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown user"


def run_write(args: argparse.Namespace) -> int:
    as_json = args.json
    try:
        site, site_dir = _load(args.site)
        if "/" not in args.address:
            raise UsageError(f"write needs one point, device/point, not {args.address!r}")
        (target,) = _targets(site, site_dir, [args.address], args)
        (point,) = target.points
        spec_point = next(p for p in target.spec.points if p.id == point.id)  # type: ignore[attr-defined]
        is_bacnet = isinstance(target.spec, BacnetDeviceSpec)
        if args.priority is not None and not is_bacnet:
            raise UsageError("--priority applies to BACnet points only")
        if args.priority is not None and not 1 <= args.priority <= 16:
            raise UsageError(f"priority {args.priority} is outside 1..16")
        if args.as_operator is not None and not args.as_operator.strip():
            raise UsageError("--as-operator needs the operator's name")
        value = _parse_value(point, args.value)
        if value is None and not is_bacnet:
            raise UsageError(f"only BACnet points can be relinquished; {args.address} is not one")
    except (SiteError, UsageError, ValueError) as exc:
        return _fail("write", str(exc), 2, as_json)
    store = audit.audit_target(args.db)
    away = None
    if store is not None:
        try:
            asyncio.run(audit.check_audit_target(store))
        except audit.AuditAway as exc:  # the journal keeps the audit until the database answers
            away = str(exc)
        except audit.AuditUnavailable as exc:
            if args.db is not None:
                return _fail("write", f"cannot audit the write, so nothing was written: {exc}", 2, as_json)
            print(f"gridctl points write: the default database cannot take the audit ({exc}); it is only "
                  f"printed", file=sys.stderr)
            store = None
    operator = args.as_operator.strip() if args.as_operator is not None else None
    write = _Write(site, args.address, point, value, _device_priority(site, args.address, point, args.priority),
                   operator or _login_name(), args.reason if operator is None else f"{args.reason} (as operator)")
    journal = None
    if store is not None:
        try:
            journal = audit.open_journal(store)
        except JournalError as exc:
            return _fail("write", f"cannot journal the write, so nothing was written: {exc}", 2, as_json)
    try:
        return _write(args, write, target, spec_point, store, journal, away)
    finally:
        if journal is not None:
            journal.close()


def _write(args: argparse.Namespace, write: _Write, target: _Target, spec_point: Any, store: str | None,
           journal: WriteJournal | None, away: str | None) -> int:
    as_json = args.json
    point, value, operator = write.point, write.value, args.as_operator
    refusal = None
    if not point.writable:
        refusal = f"{args.address} is read-only"
    elif write.priority is not None and operator is None and operator_priority_problem(write.priority):
        refusal = (f"refused: {operator_priority_problem(write.priority)}, as gridctl check says of site files; "
                   f"an operator writing there names themselves with --as-operator NAME; nothing was written")
    elif value is not None:
        try:
            check_write(spec_point, value)
        except LimitViolation:
            refusal = (f"refused: {args.value} is outside the limits of {args.address} ({_limits(point)}); "
                       f"nothing was written")
    if refusal is not None:
        if journal is not None:
            try:
                asyncio.run(journal.note(write.intent(sent=False), Outcome.REJECTED, error=refusal))
            except JournalError as exc:
                print(f"gridctl points write: the refusal could not be journalled: {exc}", file=sys.stderr)
        return _finish(write, store, journal, away, Outcome.REJECTED, refusal, 2, as_json)

    try:
        asyncio.run(_journalled(target.spec, write, journal))
    except JournalError as exc:
        if write.seq is None:
            return _fail("write", f"cannot journal the write, so nothing was written: {exc}", 2, as_json)
        # Sent, but its outcome is not on disk: the next run closes the record as interrupted.
        print(f"gridctl points write: the outcome could not be journalled: {exc}", file=sys.stderr)
        return _finish(write, store, journal, away, Outcome.INTERRUPTED, f"outcome not journalled: {exc}", 1,
                       as_json)
    except Override as exc:
        return _finish(write, store, journal, away, Outcome.OVERRIDE,
                       f"{args.address} is held at priority {exc.active_priority}, above ours: {exc}", 1, as_json)
    except WriteMismatch as exc:
        return _finish(write, store, journal, away, Outcome.MISMATCH, _device_error(args.address, exc), 1, as_json)
    except (NotCommandable, LimitViolation) as exc:
        return _finish(write, store, journal, away, Outcome.REJECTED, _device_error(args.address, exc), 1, as_json)
    except (DriverError, OSError) as exc:
        return _finish(write, store, journal, away, Outcome.FAILED, _device_error(args.address, exc), 1, as_json)
    assert write.result is not None
    done = Outcome.RELINQUISHED if write.result.written is None else Outcome.WRITTEN
    return _finish(write, store, journal, away, done, None, 0, as_json)


def _device_error(address: str, error: Exception) -> str:
    """The error, led by the point's address once."""
    text = f"{type(error).__name__}: {error}"
    return text if str(error).startswith(address) else f"{address}: {text}"


def _finish(write: _Write, store: str | None, journal: WriteJournal | None, away: str | None, outcome: Outcome,
            error: str | None, code: int, as_json: bool) -> int:
    """Ship the journal to the audit database, print the write's result or why it failed, return the exit code."""
    entry = write.entry(outcome, error)
    stored_in = None
    store_error = None
    if store is not None and journal is not None:
        try:
            if away is not None:
                raise audit.AuditAway(away)
            asyncio.run(audit.ship(journal, store))
            stored_in = audit.describe(store)
        except Exception as exc:  # the journal keeps the record: it ships with the next write to this database
            store_error = (f"{type(exc).__name__}: {exc}".rstrip(": ") + f"; kept in the write journal "
                           f"{journal.path}, stored by the next `gridctl points write` to this database")
            print(f"gridctl points write: the audit could not be stored in {audit.describe(store)} now: "
                  f"{store_error}", file=sys.stderr)
    where = (f"recorded in {stored_in}" if stored_in else f"NOT recorded yet: {store_error}" if store_error else
             f"not recorded in a database (no --db, and no database at {paths.default_database()})")
    audit_line = f"audit: {entry.outcome} by {entry.actor} at {entry.ts.isoformat()}, {where}; reason: {entry.reason}"
    audit_out = {**audit.audit_json(entry), "stored_in": stored_in, "store_error": store_error}
    if error is not None:
        if as_json:
            print(json.dumps({"error": error, "exit_code": code, "audit": audit_out}))
        print(f"gridctl points write: {error}", file=sys.stderr)
        print(audit_line, file=sys.stderr if as_json else sys.stdout)
        return code
    result = write.result
    assert result is not None
    point = write.point
    if as_json:
        print(json.dumps({"site_id": write.site.id, "address": result.address, "requested": result.requested,
                          "written": result.written, "read_back": result.read_back,
                          "label": _label(point, result.read_back), "unit": point.unit, "priority": result.priority,
                          "ts": result.ts.isoformat(), "audit": audit_out}))
        return code
    if result.priority is not None:
        at = f" at priority {result.priority}"
    elif isinstance(write.site.device(write.address.partition("/")[0]), BacnetDevice):
        at = " without priority (the object is not commandable)"
    else:
        at = ""
    done = "relinquished" if result.written is None else f":= {_format(result.written, point)}"
    print(f"{write.site.id} {result.address} {done}{at}; read back "
          f"{_format(result.read_back, point, _label(point, result.read_back))} at {result.ts.isoformat()}")
    print(audit_line)
    return code
