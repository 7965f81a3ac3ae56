"""The forecasts one optimisation needs, step by step over its horizon."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridctl.assets.base import AssetForecast


@dataclass(frozen=True)
class EvSessionForecast:
    charger_id: str
    arrival: datetime
    departure: datetime
    energy_needed_kwh: float


@dataclass(frozen=True)
class Forecasts:
    """Per-step series (one value per step of the horizon), all in UTC steps from `start`."""

    start: datetime
    step: timedelta
    n_steps: int
    # Site load that gridctl does not schedule (dwellings, services, ventilation, ...).
    base_load_kw: list[float]
    outdoor_temperature_c: list[float]
    # Global horizontal irradiance.
    irradiance_w_m2: list[float]
    import_price_eur_per_kwh: list[float]
    export_price_eur_per_kwh: list[float]
    carbon_kg_per_kwh: list[float]
    pv_kw: dict[str, list[float]] = field(default_factory=dict)
    daylight_lux: dict[str, list[float]] = field(default_factory=dict)
    occupied: dict[str, list[bool]] = field(default_factory=dict)
    dark: list[bool] = field(default_factory=list)
    ev_sessions: list[EvSessionForecast] = field(default_factory=list)
    # Other per-step series of an asset (e.g. a hot-water tank's draws): asset id -> name -> series.
    series: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # What an asset's forecast model learnt of its own plant (a zone's identified thermal model), by asset id.
    identified: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("base_load_kw", "outdoor_temperature_c", "irradiance_w_m2", "import_price_eur_per_kwh",
                     "export_price_eur_per_kwh", "carbon_kg_per_kwh"):
            if len(getattr(self, name)) != self.n_steps:
                raise ValueError(f"{name}: {len(getattr(self, name))} values for {self.n_steps} steps")
        named = [(f"{asset}.{name}", values) for asset, by_name in self.series.items()
                 for name, values in by_name.items()]
        for label, values in (*self.pv_kw.items(), *self.daylight_lux.items(), *self.occupied.items(), *named):
            if len(values) != self.n_steps:
                raise ValueError(f"{label}: {len(values)} values for {self.n_steps} steps")

    def add(self, asset_id: str, part: AssetForecast) -> None:
        """Take in one asset's part of the forecasts."""
        for label, values in (("pv_kw", part.pv_kw), ("daylight_lux", part.daylight_lux),
                              ("occupied", part.occupied), *part.series.items()):
            if values is not None and len(values) != self.n_steps:
                raise ValueError(f"{asset_id}.{label}: {len(values)} values for {self.n_steps} steps")
        if part.pv_kw is not None:
            self.pv_kw[asset_id] = part.pv_kw
        if part.daylight_lux is not None:
            self.daylight_lux[asset_id] = part.daylight_lux
        if part.occupied is not None:
            self.occupied[asset_id] = part.occupied
        if part.series:
            self.series.setdefault(asset_id, {}).update(part.series)
        if part.identified is not None:
            self.identified[asset_id] = part.identified
        self.ev_sessions.extend(part.ev_sessions)
