"""Checks across fields that a schema alone cannot express: ids, references, roles, registers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from gridctl.config.models import (
    BacnetDevice,
    Device,
    ModbusDevice,
    ModbusPoint,
    OpcuaDevice,
    Point,
    PointKind,
    Site,
)
from gridctl.config.roles import ROLES, Role
from gridctl.config.units import Quantity, quantity_of

if TYPE_CHECKING:
    from gridctl.config.loader import Origin, ProblemSink
    from gridctl.config.yamlsource import PathKey, YamlDocument

BOOLEAN_TYPES = {"bool", "Boolean"}
READ_ONLY_BACNET = {"analog-input", "binary-input", "multi-state-input", "accumulator"}
# BACnet priorities up to this one belong to life safety and human operators.
LAST_OPERATOR_PRIORITY = 8


def operator_priority_problem(priority: int) -> str | None:
    """Why gridctl, a supervisory controller, may not write at this BACnet priority; None when it may."""
    if priority <= LAST_OPERATOR_PRIORITY:
        return f"priority {priority} belongs to life safety and operators; use {LAST_OPERATOR_PRIORITY + 1}-16"
    return None


class _Context:
    def __init__(self, document: YamlDocument, origins: dict[PathKey, Origin], sink: ProblemSink) -> None:
        from gridctl.config.loader import Origin

        self._origin_type = Origin
        self.document = document
        self.origins = origins
        self.sink = sink

    def report(self, path: PathKey, message: str) -> None:
        for prefix_length in range(len(path), 0, -1):
            mapped = self.origins.get(path[:prefix_length])
            if mapped is not None:
                origin = self._origin_type(mapped.document, (*mapped.path, *path[prefix_length:]))
                break
        else:
            origin = self._origin_type(self.document, path)
        self.sink.add(origin, message)


def check_site_semantics(site: Site, document: YamlDocument, origins: dict[PathKey, Origin],
                         sink: ProblemSink) -> None:
    from gridctl.assets import adapter_for  # the adapters import the service, which imports the config

    ctx = _Context(document, origins, sink)
    _unique(ctx, ("buildings",), [b.id for b in site.buildings], "building")
    _unique(ctx, ("devices",), [d.id for d in site.devices], "device")
    _unique(ctx, ("assets",), [a.id for a in site.assets], "asset")
    _unique(ctx, ("dwellings",), [d.id for d in site.dwellings], "dwelling")
    buildings = {b.id for b in site.buildings}
    points: dict[str, Point] = {}
    for index, device in enumerate(site.devices):
        base = ("devices", index)
        _unique(ctx, (*base, "points"), [p.id for p in device.points], "point")
        for point_index, point in enumerate(device.points):
            points.setdefault(f"{device.id}/{point.id}", point)
            _check_point(ctx, (*base, "points", point_index), point)
        if isinstance(device, ModbusDevice):
            _check_modbus(ctx, base, device)
        elif isinstance(device, BacnetDevice):
            _check_bacnet(ctx, base, device)
        elif isinstance(device, OpcuaDevice):
            _check_opcua(ctx, base, device)
        if not device.points:
            ctx.report((*base,), "device has no points (give it a map or points)")
        if device.local_mode_point is not None and device.local_mode_point not in {p.id for p in device.points}:
            ctx.report((*base, "local_mode_point"), f"no point {device.local_mode_point!r} on this device")
        _check_watchdog(ctx, base, device)
    _check_endpoints(ctx, site)

    checks = _Checks(ctx, points)
    grid_roles = ROLES["grid"]
    _check_roles(ctx, ("grid", "points"), site.grid.points, grid_roles, points, "grid")
    if site.grid.subscribed_power_kw > site.grid.import_limit_kw:
        ctx.report(("grid", "subscribed_power_kw"),
                   f"subscribed power {site.grid.subscribed_power_kw} kW exceeds the import limit "
                   f"{site.grid.import_limit_kw} kW")

    dwellings = {d.id: d for d in site.dwellings}
    for index, asset in enumerate(site.assets):
        base = ("assets", index)
        if asset.building is not None and asset.building not in buildings:
            ctx.report((*base, "building"), f"unknown building {asset.building!r}")
        home = dwellings.get(asset.dwelling) if asset.dwelling is not None else None
        if asset.dwelling is not None and home is None:
            ctx.report((*base, "dwelling"), f"unknown dwelling {asset.dwelling!r}")
        elif home is not None and asset.building is not None and asset.building != home.building:
            ctx.report((*base, "building"), f"building {asset.building!r} is not that of dwelling {home.id!r} "
                                            f"({home.building!r})")
        adapter = adapter_for(asset, site)
        checks.roles((*base, "points"), asset.points, adapter.roles, adapter.type)
        adapter.check(checks, base)

    _check_watchdogs_unbound(ctx, site)

    for index, dwelling in enumerate(site.dwellings):
        base = ("dwellings", index)
        if dwelling.building not in buildings:
            ctx.report((*base, "building"), f"unknown building {dwelling.building!r}")
        _check_roles(ctx, base, {"meter": dwelling.meter}, ROLES["dwelling"], points, "dwelling")
    meters: dict[str, int] = {}
    for index, dwelling in enumerate(site.dwellings):
        if dwelling.meter in meters:
            ctx.report(("dwellings", index, "meter"),
                       f"meter {dwelling.meter} is already the meter of dwelling "
                       f"{site.dwellings[meters[dwelling.meter]].id!r}")
        meters.setdefault(dwelling.meter, index)


class _Checks:
    """The checks an asset adapter may run on its part of the site file."""

    def __init__(self, ctx: _Context, points: dict[str, Point]) -> None:
        self._ctx = ctx
        self._points = points

    def report(self, path: PathKey, message: str) -> None:
        self._ctx.report(path, message)

    def roles(self, path: PathKey, bound: Mapping[str, str], roles: Mapping[str, Role], owner: str) -> None:
        _check_roles(self._ctx, path, bound, roles, self._points, owner)

    def unique(self, path: PathKey, ids: Sequence[str], what: str) -> None:
        _unique(self._ctx, path, ids, what)

    def point(self, address: str) -> Point | None:
        return self._points.get(address)


def _unique(ctx: _Context, path: PathKey, ids: Iterable[str], what: str) -> None:
    seen: dict[str, int] = {}
    for index, identifier in enumerate(ids):
        if identifier in seen:
            ctx.report((*path, index, "id"), f"duplicate {what} id {identifier!r} (first at index {seen[identifier]})")
        else:
            seen[identifier] = index


def _is_boolean(point: Point) -> bool:
    if isinstance(point, ModbusPoint):
        return point.function in ("coil", "discrete_input") or point.data_type == "bool"
    data_type = getattr(point, "data_type", None)
    object_type = getattr(point, "object_type", "")
    return data_type in BOOLEAN_TYPES or object_type.startswith("binary-")


def _check_point(ctx: _Context, path: PathKey, point: Point) -> None:
    quantity = quantity_of(point.unit)
    if point.kind == PointKind.ENERGY_COUNTER and quantity != Quantity.ENERGY:
        ctx.report((*path, "unit"), f"an energy counter must be in Wh, kWh or MWh, not {point.unit!r}")
    if point.writable and not _is_boolean(point) and not point.states and (point.min is None or point.max is None):
        ctx.report((*path, "writable"), "writable point needs both min and max limits")
    if not point.writable and (point.lease_s is not None or point.ramp_per_minute is not None):
        ctx.report((*path, "lease_s" if point.lease_s is not None else "ramp_per_minute"),
                   "only a writable point can have a lease or a ramp limit")
    if point.writable and point.kind in (PointKind.MEASUREMENT, PointKind.ENERGY_COUNTER):
        ctx.report((*path, "writable"), f"a {point.kind.value} cannot be writable; use kind setpoint or state")


def _check_modbus(ctx: _Context, base: PathKey, device: ModbusDevice) -> None:
    # Registers each point occupies, per table; bit points only claim their own bit.
    tables: dict[str, dict[int, tuple[int, int | None]]] = {}
    for index, point in enumerate(device.points):
        path = (*base, "points", index)
        bit_table = point.function in ("coil", "discrete_input")
        if bit_table and point.data_type != "bool":
            ctx.report((*path, "data_type"),
                       f"function {point.function} carries single bits: data_type must be bool, "
                       f"not {point.data_type}")
        if not bit_table and point.data_type == "bool" and point.bit is None:
            ctx.report((*path, "bit"), f"a bool in a {point.function} needs the bit it occupies (0-15)")
        if point.bit is not None and (bit_table or point.data_type not in ("bool", "uint16", "int16")):
            ctx.report((*path, "bit"), f"bit applies to a 16-bit register, not to {point.function} "
                                       f"{point.data_type}")
        if point.writable and point.function in ("discrete_input", "input_register"):
            ctx.report((*path, "writable"), f"{point.function} is read-only in Modbus")
        if point.register_address + point.register_count - 1 > 65535:
            ctx.report((*path, "register"), "point runs past register 65535")
        table = tables.setdefault(point.function, {})
        for register in range(point.register_address, point.register_address + point.register_count):
            claimed = table.get(register)
            if claimed is not None:
                other_index, other_bit = claimed
                if point.bit is not None and other_bit is not None and point.bit != other_bit:
                    continue
                other = device.points[other_index]
                ctx.report((*path, "register"),
                           f"{point.function} {register} overlaps point {other.id!r} "
                           f"({other.function} {other.register_address}, {other.data_type})")
                break
            table[register] = (index, point.bit)


def _check_bacnet(ctx: _Context, base: PathKey, device: BacnetDevice) -> None:
    seen: dict[tuple[str, int, str], str] = {}
    for index, point in enumerate(device.points):
        path = (*base, "points", index)
        key = (point.object_type, point.instance, point.property)
        if key in seen:
            ctx.report((*path, "instance"),
                       f"{point.object_type} {point.instance} {point.property} is already point {seen[key]!r}")
        seen.setdefault(key, point.id)
        if point.writable and point.object_type in READ_ONLY_BACNET:
            ctx.report((*path, "writable"), f"{point.object_type} present-value is not commandable")
        problem = None if point.priority is None else operator_priority_problem(point.priority)
        if problem is not None:
            ctx.report((*path, "priority"), problem)
        if point.priority is not None and not point.writable:
            ctx.report((*path, "priority"), "priority is only meaningful on a writable point")


def _check_opcua(ctx: _Context, base: PathKey, device: OpcuaDevice) -> None:
    seen: dict[str, str] = {}
    for index, point in enumerate(device.points):
        if point.node_id in seen:
            ctx.report((*base, "points", index, "node_id"),
                       f"node {point.node_id} is already point {seen[point.node_id]!r}")
        seen.setdefault(point.node_id, point.id)
    security = device.security
    if security.policy != "None" and security.server_certificate is None:
        ctx.report((*base, "security", "server_certificate"),
                   "an encrypted session must validate the server: give server_certificate")


def _check_watchdog(ctx: _Context, base: PathKey, device: Device) -> None:
    watchdog = device.watchdog
    if watchdog is None:
        return
    path = (*base, "watchdog", "point")
    point = next((p for p in device.points if p.id == watchdog.point), None)
    if point is None:
        ctx.report(path, f"no point {watchdog.point!r} on this device")
    elif not point.writable:
        ctx.report(path, f"{watchdog.point!r} is not writable: gridctl writes the heartbeat")
    elif _is_boolean(point) or point.states:
        ctx.report(path, f"{watchdog.point!r} must be a number: the heartbeat is a counter")
    elif point.min is not None and point.max is not None and point.max - point.min < 1:
        ctx.report(path, f"{watchdog.point!r} must span at least two whole numbers (min {point.min:g}, "
                         f"max {point.max:g}): the heartbeat counter changes at every beat")
    if watchdog.point == device.local_mode_point:
        ctx.report(path, "the watchdog point cannot be the local-mode point")


def _check_watchdogs_unbound(ctx: _Context, site: Site) -> None:
    """A heartbeat point belongs to the watchdog: an asset writing it too would break the heartbeat."""
    bound: dict[str, PathKey] = {}
    for index, asset in enumerate(site.assets):
        for role_name, address in asset.points.items():
            bound.setdefault(address, ("assets", index, "points", role_name))
        for charger_index, charger in enumerate(getattr(asset, "chargers", ())):
            for role_name, address in charger.points.items():
                bound.setdefault(address, ("assets", index, "chargers", charger_index, "points", role_name))
    for device in site.devices:
        if device.watchdog is None:
            continue
        address = f"{device.id}/{device.watchdog.point}"
        if address in bound:
            ctx.report(bound[address], f"{address} is the watchdog heartbeat of {device.id}; no asset may use it")


def _check_endpoints(ctx: _Context, site: Site) -> None:
    modbus: dict[tuple[str, int, int], str] = {}
    bacnet_instances: dict[int, str] = {}
    for index, device in enumerate(site.devices):
        if isinstance(device, ModbusDevice):
            key = (device.host, device.port, device.unit_id)
            if key in modbus:
                ctx.report(("devices", index, "unit_id"),
                           f"{device.host}:{device.port} unit {device.unit_id} is already device {modbus[key]!r}")
            modbus.setdefault(key, device.id)
        elif isinstance(device, BacnetDevice):
            host, _, port = device.address.partition(":")
            local = site.bacnet
            if (local.local_port and int(port or 47808) == local.local_port
                    and (host == local.local_address
                         or (local.local_address in (None, "0.0.0.0") and host.startswith("127.")))):
                ctx.report(("devices", index, "address"),
                           f"{device.address} is where gridctl itself talks BACnet/IP from (bacnet.local_port)")
            if device.device_instance in bacnet_instances:
                ctx.report(("devices", index, "device_instance"),
                           f"BACnet device instance {device.device_instance} is already device "
                           f"{bacnet_instances[device.device_instance]!r}")
            bacnet_instances.setdefault(device.device_instance, device.id)


def _check_roles(ctx: _Context, path: PathKey, bound: Mapping[str, str], roles: Mapping[str, Role],
                 points: dict[str, Point], owner: str) -> None:
    for role_name, role in roles.items():
        if role.required and role_name not in bound:
            ctx.report(path, f"a {owner} needs a {role_name!r} point")
    for role_name, address in bound.items():
        role_path = (*path, role_name)
        role = roles.get(role_name)
        if role is None:
            ctx.report(role_path, f"unknown role {role_name!r} for a {owner}; known: {', '.join(roles)}")
            continue
        point = points.get(address)
        if point is None:
            ctx.report(role_path, f"no point {address!r} (device/point)")
            continue
        quantity = quantity_of(point.unit)
        if quantity != role.quantity:
            ctx.report(role_path, f"{address} is in {point.unit!r} ({quantity}), but {role_name} of a {owner} "
                                  f"needs {role.quantity.value}")
        elif point.kind not in role.kinds:
            kinds = " or ".join(k.value for k in role.kinds)
            ctx.report(role_path, f"{address} is a {point.kind.value}, but {role_name} needs a {kinds}")
        if role.writable and not point.writable:
            ctx.report(role_path, f"{address} is not writable, but {role_name} is written by gridctl")
