"""Asset adapters: one module per asset type, one registry line each.

To add a type: its model in `gridctl/config/models.py` (and in the `Asset` union), a module here
with an `AssetAdapter` subclass, and its line in `ADAPTERS`.
"""

from __future__ import annotations

from gridctl.assets.base import (
    AssetAdapter,
    AssetForecast,
    AssetMemory,
    DispatchContext,
    ForecastContext,
    ForecastModel,
    KpiPart,
    ObservationBatch,
    ProblemContext,
)
from gridctl.assets.battery import Battery
from gridctl.assets.deferrable import Deferrable
from gridctl.assets.ev_pool import EvPool
from gridctl.assets.hot_water_tank import HotWaterTank
from gridctl.assets.lighting_zone import LightingZone
from gridctl.assets.public_lighting import PublicLighting
from gridctl.assets.pv import Pv
from gridctl.assets.thermal_zone import ThermalZone
from gridctl.config import models as m

ADAPTERS: dict[str, type[AssetAdapter]] = {
    "battery": Battery,
    "ev_charger_pool": EvPool,
    "thermal_zone": ThermalZone,
    "deferrable_appliance": Deferrable,
    "lighting_zone": LightingZone,
    "public_lighting_circuit": PublicLighting,
    "pv": Pv,
    "hot_water_tank": HotWaterTank,
}


def adapter_for(asset: m.AssetBase, site: m.Site) -> AssetAdapter:
    """The adapter of one asset of `site`."""
    kind = getattr(asset, "type", None)
    adapter = ADAPTERS.get(kind) if isinstance(kind, str) else None
    if adapter is None:
        raise KeyError(f"asset {asset.id!r}: no adapter for asset type {kind!r}; known: {', '.join(ADAPTERS)}")
    return adapter(asset, site)


def site_adapters(site: m.Site) -> list[AssetAdapter]:
    """The adapters of every asset of `site`, in the site file's order."""
    return [adapter_for(asset, site) for asset in site.assets]


__all__ = [
    "ADAPTERS",
    "AssetAdapter",
    "AssetForecast",
    "AssetMemory",
    "DispatchContext",
    "ForecastContext",
    "ForecastModel",
    "KpiPart",
    "ObservationBatch",
    "ProblemContext",
    "adapter_for",
    "site_adapters",
]
