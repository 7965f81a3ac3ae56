"""What staff (operators, managers, admins) see of dwellings: building aggregates over at least the minimum
number of dwellings, never one dwelling's power, current or load curve. A dwelling meter's health (online
or offline) stays visible, without the error's details, which may quote a value the meter sent.

Every point of a device that carries a dwelling's meter, or a point of an asset of a dwelling (a resident's
water heater), is the dwelling's. A live building aggregate is
published only while every dwelling of the building reports a good reading: were it published over the
dwellings reporting at each moment, two answers a minute apart, one with a meter more than the other,
would differ by that one dwelling's power.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from drivers.base import Quality, Reading
from gridctl.config.models import AssetBase, Dwelling, PointKind, Site
from gridctl.config.units import UNITS, Quantity

AGGREGATE_PREFIX = "dwellings:"


def dwelling_devices(site: Site) -> dict[str, str]:
    """Device id -> building of every device carrying a dwelling's meter or a point of a dwelling's asset."""
    devices = {d.meter.partition("/")[0]: d.building for d in site.dwellings}
    buildings = {d.id: d.building for d in site.dwellings}
    for asset in site.assets:
        if asset.dwelling is not None:
            # A dwelling the site no longer lists still owns its equipment: private whatever.
            building = buildings.get(asset.dwelling, asset.building or "")
            for address in _asset_addresses(asset):
                devices.setdefault(address.partition("/")[0], building)
    return devices


def _asset_addresses(asset: AssetBase) -> list[str]:
    addresses = list(asset.points.values())
    for charger in getattr(asset, "chargers", []):
        addresses += list(charger.points.values())
    return addresses


def is_private(site: Site, address: str, devices: Mapping[str, str] | None = None) -> bool:
    """Whether an address (`device/point`) or a device id belongs to a dwelling."""
    devices = dwelling_devices(site) if devices is None else devices
    return address.partition("/")[0] in devices


def private_assets(site: Site) -> set[str]:
    """Assets of a dwelling, or measured or actuated through a dwelling's device: their schedule is the
    dwelling's too."""
    devices = dwelling_devices(site)
    out = set()
    for asset in site.assets:
        if any(is_private(site, a, devices) for a in _asset_addresses(asset)):
            out.add(asset.id)
    return out


def private_subject(site: Site, subject: str) -> bool:
    """Whether an alarm's subject (a point, a device or an asset) is a dwelling's."""
    return is_private(site, subject) or subject in private_assets(site)


def redacted_error(error: str | None) -> str | None:
    """The kind of a dwelling meter's error without its text (`DecodeError: power: device sent 3120` would
    quote the dwelling's power)."""
    if error is None:
        return None
    kind = error.partition(":")[0].strip()
    return f"{kind} (details withheld: a dwelling's device)" if kind.isidentifier() else "withheld: a dwelling's device"


@dataclass(frozen=True)
class BuildingAggregate:
    """The sum of one quantity over every dwelling of a building, or None when withheld."""

    address: str
    value: float | None
    unit: str
    ts: datetime
    dwellings: int
    reporting: int
    note: str


def _power_points(site: Site, device_id: str) -> list[tuple[str, float]]:
    """The power measurements of a meter device, with their factor to kW."""
    device = site.device(device_id)
    return [(f"{device_id}/{p.id}", UNITS[p.unit][1]) for p in device.points
            if p.unit in UNITS and UNITS[p.unit][0] is Quantity.POWER and p.kind == PointKind.MEASUREMENT]


def building_aggregates(site: Site, latest: Mapping[str, Reading], minimum: int,
                        now: datetime) -> list[BuildingAggregate]:
    """Per building with dwellings: total power (kW) and total metered energy (kWh) of its dwellings."""
    by_building: dict[str, list[Dwelling]] = {}
    for dwelling in site.dwellings:
        by_building.setdefault(dwelling.building, []).append(dwelling)
    out = []
    for building, dwellings in sorted(by_building.items()):
        power = [_power_points(site, d.meter.partition("/")[0]) for d in dwellings]
        energy = [[(d.meter, UNITS[site.point(d.meter).unit][1])] for d in dwellings]
        out.append(_aggregate(f"{AGGREGATE_PREFIX}{building}/power", "kW", power, latest, minimum, now))
        out.append(_aggregate(f"{AGGREGATE_PREFIX}{building}/energy", "kWh", energy, latest, minimum, now))
    return out


def _aggregate(address: str, unit: str, members: list[list[tuple[str, float]]], latest: Mapping[str, Reading],
               minimum: int, now: datetime) -> BuildingAggregate:
    """The sum over members (each: its points and their factors), published only over every member."""
    count = len(members)
    total = 0.0
    reporting = 0
    newest: datetime | None = None
    for points in members:
        readings = [(latest.get(a), factor) for a, factor in points]
        good = [(r, f) for r, f in readings if r is not None and r.quality == Quality.GOOD
                and isinstance(r.value, int | float) and not isinstance(r.value, bool)]
        if not readings or len(good) < len(readings):
            continue
        reporting += 1
        for reading, factor in good:
            total += float(reading.value) * factor  # type: ignore[arg-type]
            newest = reading.ts if newest is None or reading.ts > newest else newest
    if count < minimum:
        return BuildingAggregate(address, None, unit, now, count, reporting,
                                 f"withheld: a building total covers at least {minimum} dwellings; "
                                 f"this building has {count}")
    if reporting < count:
        return BuildingAggregate(address, None, unit, now, count, reporting,
                                 f"withheld until every dwelling reports: {reporting} of {count} do")
    return BuildingAggregate(address, total, unit, newest or now, count, reporting, f"sum of {count} dwellings")


def without_private(site: Site, latest: Mapping[str, Reading]) -> dict[str, Reading]:
    """The readings of everything but the dwellings' devices."""
    devices = dwelling_devices(site)
    return {a: r for a, r in latest.items() if not is_private(site, a, devices)}
