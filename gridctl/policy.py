"""What an energy manager sets for a site: objective weights and limits, versioned."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gridctl.config.models import TimeWindow
from optimizer import Policy as Weights


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComfortBandC(_Model):
    min_temperature_c: float = Field(ge=5, le=35)
    max_temperature_c: float = Field(ge=5, le=35)

    @model_validator(mode="after")
    def _ordered(self) -> ComfortBandC:
        if self.min_temperature_c >= self.max_temperature_c:
            raise ValueError("min_temperature_c must be below max_temperature_c")
        return self


class ZoneComfort(_Model):
    occupied: ComfortBandC | None = None
    unoccupied: ComfortBandC | None = None
    # Local hours when the zone counts as occupied, replacing the site description's (and any learnt) ones.
    occupied_hours: list[TimeWindow] | None = Field(default=None, max_length=14)


class DemandResponse(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    start: AwareDatetime
    end: AwareDatetime
    max_import_kw: float = Field(ge=0)
    value_eur_per_kwh: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> DemandResponse:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class SitePolicy(_Model):
    """The policy in force for a site. Limits left unset take the site description's values."""

    weights: Weights = Weights()
    import_limit_kw: float | None = Field(default=None, gt=0)
    export_limit_kw: float | None = Field(default=None, ge=0)
    # Thermal zone id -> comfort bands replacing the site description's.
    comfort: dict[str, ZoneComfort] = Field(default_factory=dict)
    # Lighting zone id -> required illuminance while occupied (EN 12464-1: 500 lx for offices).
    lighting_required_lx: dict[str, float] = Field(default_factory=dict)
    # The commune's curfew for public lighting, and the level allowed during it.
    public_lighting_curfew: TimeWindow | None = None
    public_lighting_curfew_level_pct: float = Field(default=0.0, ge=0, le=100)
    # Energy every EV session gets before its departure when the car asks for at least that much.
    ev_minimum_energy_kwh: float = Field(default=0.0, ge=0)
    demand_response: list[DemandResponse] = Field(default_factory=list)
    # Highest power any one charger may give a car (the charger's own rating when unset or higher).
    ev_max_power_kw: float | None = Field(default=None, gt=0)
    # The connection's subscribed power replacing the site description's; above it each kW·h costs the
    # weights' overshoot price.
    subscribed_power_kw: float | None = Field(default=None, gt=0)
    # False: demand-response events are recorded but the site does not take part in them.
    demand_response_participation: bool = True
    horizon_hours: float = Field(default=24.0, ge=1, le=48)
    step_minutes: float = Field(default=15.0, ge=5, le=60)


class PolicyVersion(_Model):
    site_id: str
    version: int = Field(ge=1)
    policy: SitePolicy
    author: str
    comment: str = ""
    created_at: datetime
