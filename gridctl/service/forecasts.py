"""The forecasts one optimisation needs, step by step over its horizon."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


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

    def __post_init__(self) -> None:
        for name in ("base_load_kw", "outdoor_temperature_c", "irradiance_w_m2", "import_price_eur_per_kwh",
                     "export_price_eur_per_kwh", "carbon_kg_per_kwh"):
            if len(getattr(self, name)) != self.n_steps:
                raise ValueError(f"{name}: {len(getattr(self, name))} values for {self.n_steps} steps")
        for label, series in (*self.pv_kw.items(), *self.daylight_lux.items(), *self.occupied.items()):
            if len(series) != self.n_steps:
                raise ValueError(f"{label}: {len(series)} values for {self.n_steps} steps")

    def step_starts(self) -> list[datetime]:
        return [self.start + self.step * k for k in range(self.n_steps)]
