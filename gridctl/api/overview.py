"""A site at a glance for operators: where the power flows now, by kind of equipment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers.base import Quality, Reading
from gridctl.assets import site_adapters
from gridctl.config import models as m
from gridctl.config.units import UNITS

# Kinds in the order a person reads a site: what comes in, what is produced and stored, what is used.
FLOW_KINDS = ("grid", "pv", "battery", "ev", "heating_cooling", "lighting", "appliances")


@dataclass(frozen=True)
class Flow:
    kind: str
    power_kw: float | None  # None: no fresh reading of any of its points
    points: int
    missing: int  # points without a usable reading
    latest: datetime | None


def _power_points(site: m.Site) -> dict[str, list[str]]:
    by_kind: dict[str, list[str]] = {kind: [] for kind in FLOW_KINDS}
    if "power" in site.grid.points:
        by_kind["grid"].append(site.grid.points["power"])
    for adapter in site_adapters(site):
        by_kind[adapter.flow] += adapter.power_points()
    return by_kind


def power_flows(site: m.Site, latest: Mapping[str, Reading], now: datetime,
                max_age: timedelta = timedelta(minutes=15)) -> list[Flow]:
    """Power per kind of equipment now, in kW (grid: positive importing; battery: positive charging).
    Readings older than `max_age` or of bad quality do not count."""
    flows = []
    for kind, addresses in _power_points(site).items():
        if not addresses:
            continue
        total, missing, newest = 0.0, 0, None
        for address in addresses:
            reading = latest.get(address)
            usable = (reading is not None and reading.quality is not Quality.BAD and reading.value is not None
                      and not isinstance(reading.value, bool | str) and now - reading.ts <= max_age)
            if not usable:
                missing += 1
                continue
            total += float(reading.value) * UNITS[site.point(address).unit][1]  # type: ignore[union-attr, arg-type]
            newest = reading.ts if newest is None or reading.ts > newest else newest  # type: ignore[union-attr]
        known = len(addresses) - missing
        flows.append(Flow(kind, round(total, 3) if known else None, len(addresses), missing, newest))
    return flows
