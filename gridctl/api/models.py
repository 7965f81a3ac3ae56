"""The API's request and response bodies, kept apart from storage rows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from gridctl.alarms import AlarmKind
from gridctl.api.energy import Resolution
from gridctl.api.store import Purpose, Role
from gridctl.policy import DemandResponse, SitePolicy


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DwellingRef(BaseModel):
    site_id: str
    dwelling_id: str
    building: str | None


class Me(BaseModel):
    name: str
    role: Role
    dwellings: list[DwellingRef]
    sites: list[str]


class EnergyBucket(BaseModel):
    start: datetime
    energy_kwh: float | None


class Consumption(BaseModel):
    site_id: str
    dwelling_id: str
    resolution: Resolution
    start: date
    end: date
    total_kwh: float
    buckets: list[EnergyBucket]


class MonthlySummary(BaseModel):
    site_id: str
    dwelling_id: str
    month: str
    energy_kwh: float
    peak_energy_kwh: float | None
    offpeak_energy_kwh: float | None
    cost_eur: float | None
    tariff: str
    days_with_data: int
    days_in_month: int
    note: str | None = None


class ComparisonDay(BaseModel):
    day: date
    energy_kwh: float | None
    median_kwh: float | None


class ComparisonOut(BaseModel):
    site_id: str
    dwelling_id: str
    building: str
    start: date
    end: date
    energy_kwh: float | None
    median_kwh: float
    dwellings_compared: int
    days: list[ComparisonDay]


class ConsentState(BaseModel):
    purpose: Purpose
    granted: bool
    decided_at: datetime | None


class ConsentChange(Body):
    granted: Annotated[bool, Strict()]


class ErasureOut(BaseModel):
    erased: bool
    dwellings_unlinked: int
    consents_removed: int
    note: str


class SiteSummary(BaseModel):
    id: str
    name: str
    timezone: str
    devices: int
    points: int
    dwellings: int
    buildings: list[str]
    running: bool
    active_alarms: int | None
    controlled_by: str | None = Field(
        default=None, description="The gridctl instance controlling the site now (host name / instance id); null "
                                  "when none has published its live values lately (instances sharing sites)")


class LivePoint(BaseModel):
    address: str
    value: float | str | bool | None
    unit: str
    quality: str
    ts: datetime
    age_s: float
    age_wall_s: float = Field(description="the age in wall-clock seconds (differs from age_s in a simulation "
                                          "running faster than real time)")
    error: str | None = None
    note: str | None = Field(default=None, description="for a building's dwellings: what the total covers, or why "
                                                          "it is withheld")


class DeviceHealthOut(BaseModel):
    device_id: str
    protocol: str
    state: str
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_failures: int


class AlarmOut(BaseModel):
    kind: str
    subject: str
    message: str
    severity: str
    raised_at: datetime
    cleared_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    active: bool


class AlarmAck(Body):
    kind: AlarmKind
    subject: str = Field(max_length=200)


class AuditOut(BaseModel):
    ts: datetime
    address: str
    actor: str
    reason: str
    outcome: str
    old_value: Any
    requested_value: Any
    written_value: Any
    read_back: Any
    priority: int | None
    lease_until: datetime | None
    schedule_id: str | None
    policy_version: int | None
    error: str | None
    clamped: bool
    ramped: bool
    unit: str
    # Which gridctl wrote it (host name / journal id), and the fencing epoch of its site lease.
    instance_id: str | None = None
    epoch: int | None = None


class ScheduleOut(BaseModel):
    site_id: str
    schedule_id: str | None
    created_at: datetime | None
    valid_until: datetime | None
    policy_version: int | None
    status: str
    objective_eur: float | None = Field(description="null when the solver found no schedule (e.g. its time limit ran "
                                                    "out): never a false 0")
    objective: dict[str, Any]
    violations: list[dict[str, Any]]
    steps: list[datetime]
    series: dict[str, list[float | None]]
    asset_names: dict[str, str] = Field(default_factory=dict,
                                        description="asset (and charger) id -> its name, for the series' labels")


# `site`, `device:<id>` or `point:<device>/<point>`.
SCOPE_PATTERN = r"^(site|device:[^/]+|point:[^/]+/[^/]+)$"


class HandsOffRequest(Body):
    scope: str = Field(max_length=200, pattern=SCOPE_PATTERN,
                       description="`site`, `device:<id>` or `point:<device>/<point>`")
    reason: str = Field(min_length=1, max_length=500)


class HandsOffOut(BaseModel):
    scopes: list[str]
    relinquished: list[str] = []
    pending: bool = Field(
        default=False, description="Asked on an instance that does not control the site: stored, and applied by "
                                   "the instance that controls it (or takes it over) as soon as it reads it")


class PolicyChange(Body):
    policy: SitePolicy
    comment: str = Field(default="", max_length=1000)
    base_version: Annotated[int, Strict()] | None = Field(
        default=None, ge=0, le=2**31 - 1,
        description="The version this change was made from (0: the site defaults). When given, the change is "
                    "refused (409) if another version was stored since.")


class PolicyPreviewRequest(Body):
    policy: SitePolicy


class RejectedVersionOut(BaseModel):
    version: int
    author: str
    comment: str
    created_at: datetime
    problem: str = Field(description="why this stored version no longer validates")


class PolicyVersionOut(BaseModel):
    site_id: str
    version: int | None
    author: str | None
    comment: str
    created_at: datetime | None
    policy: SitePolicy
    changed: list[str]
    rejected: list[RejectedVersionOut] = Field(
        default_factory=list,
        description="Stored versions newer than this one that no longer validate: this one is in force instead.")


class StoredVersionOut(BaseModel):
    site_id: str
    version: int
    author: str
    comment: str
    created_at: datetime
    policy: SitePolicy | None = Field(description="null when the version no longer validates")
    changed: list[str]
    problem: str | None = Field(default=None, description="why the version no longer validates")


class DemandResponseOut(BaseModel):
    site_id: str
    event_id: str
    event: DemandResponse | None = Field(description="null when the stored event no longer validates")
    problem: str | None = Field(default=None, description="why the stored event no longer validates")
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    state: Literal["upcoming", "in_progress", "over", "cancelled", "rejected"] = Field(
        description="at the service's time: pages must not judge it by the browser's clock")


class Kpi(BaseModel):
    value: float | None
    unit: str
    note: str | None = None


class KpisOut(BaseModel):
    site_id: str
    start: date
    end: date
    kpis: dict[str, Kpi]


class ThermalParameters(BaseModel):
    """A zone's RC model and internal gains (as seen through the site file's heat-pump COP formula)."""

    structure: str
    resistance_k_per_kw: float
    capacitance_kwh_per_k: float
    envelope_resistance_k_per_kw: float | None = None
    envelope_capacitance_kwh_per_k: float | None = None
    solar_aperture_m2: float
    internal_gain_occupied_kw: float
    internal_gain_idle_kw: float


class ThermalFit(BaseModel):
    """How well a model predicts the zone's measured indoor temperature."""

    one_step_rmse_k: float | None
    day_ahead_rmse_k: float | None = Field(description="predictions up to 24 h ahead from the measured temperature")
    samples: int


class ThermalModelOut(BaseModel):
    zone: str
    in_use: Literal["identified", "site_file"]
    reason: str
    fitted_at: datetime | None
    site_file: ThermalParameters
    identified: ThermalParameters | None = Field(description="null until the zone's history allows a fit")
    training: ThermalFit | None
    held_out: ThermalFit | None = Field(description="the identified model on the newest days, kept out of the fit")
    site_file_held_out: ThermalFit | None = Field(description="the site file's model on the same days")


class OpenDay(BaseModel):
    day: date
    energy_kwh: float | None
    dwellings_reporting: int
    note: str | None = Field(default=None, description="why the day's figure is withheld")


class OpenDaily(BaseModel):
    site_id: str
    building_id: str | None
    dwellings: int
    minimum_dwellings: int
    days: list[OpenDay]


class OpenSite(BaseModel):
    site_id: str
    name: str
    dwellings: int
    buildings: list[str]


class LoginRequest(Body):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class ActivationRequest(Body):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    name: str
    role: Role
    home: str = Field(description="the page this role starts on")


class PowerFlowOut(BaseModel):
    kind: str = Field(description="grid, pv, battery, ev, heating_cooling, lighting or appliances")
    power_kw: float | None = Field(description="now; grid positive when importing, battery positive when charging")
    points: int
    missing: int = Field(description="points without a fresh, good reading")
    latest: datetime | None


class OverviewOut(BaseModel):
    site_id: str
    name: str
    at: datetime
    flows: list[PowerFlowOut]
    active_alarms: int
    unacknowledged_alarms: int
    critical_alarms: int
    devices_by_state: dict[str, int]
    hands_off: list[str]
    schedule_id: str | None
    schedule_valid_until: datetime | None


class ViolationOut(BaseModel):
    asset_id: str
    kind: str
    start: datetime
    end: datetime
    amount: float
    unit: str
    hard: bool
    text: str = Field(description="the violation in words (English; the pages word it in the reader's language)")


class PlanFigures(BaseModel):
    status: str
    objective_eur: float | None = Field(description="null when the solver found no schedule")
    cost_eur: float | None
    co2_kg: float | None
    peak_kw: float | None
    discomfort_k_h: float
    ev_unmet_kwh: float
    violations: list[ViolationOut]


class WhatIfOut(BaseModel):
    site_id: str
    current_version: int | None
    horizon_start: datetime | None
    horizon_hours: float
    current: PlanFigures
    proposed: PlanFigures
    changed: list[str]


class AdviceItem(BaseModel):
    kind: str = Field(description="night_base_load, peak_hours or above_median")
    own: float
    building: float | None
    unit: str
    yearly_eur: float | None = Field(description="what acting on it would save in a year, at the dwelling's tariff")


class TariffOut(BaseModel):
    kind: str
    base_price_eur_per_kwh: float | None
    peak_price_eur_per_kwh: float | None
    offpeak_price_eur_per_kwh: float | None
    offpeak_windows: list[str]


class ResidentAdvice(BaseModel):
    site_id: str
    dwelling_id: str
    building: str
    month: str
    data_start: date | None = Field(description="first day with data in the last year")
    data_end: date | None = Field(description="day after the last day with data")
    energy_kwh: float | None
    median_kwh: float | None = Field(description="median of the building's dwellings over the same days")
    percent_vs_median: float | None
    dwellings_compared: int
    comparison_note: str | None
    peak_kwh: float | None
    offpeak_kwh: float | None
    peak_cost_eur: float | None
    offpeak_cost_eur: float | None
    cost_eur: float | None
    tariff: TariffOut
    advice: list[AdviceItem]


class ZoneValues(BaseModel):
    id: str
    name: str
    building: str | None
    occupied: tuple[float, float]
    unoccupied: tuple[float, float]
    occupied_hours: list[str] = Field(description="local 'HH:MM-HH:MM' windows of the site description")


class SiteValuesOut(BaseModel):
    """What the site description sets, which a policy may override: the policy form's defaults."""

    site_id: str
    timezone: str
    zones: list[ZoneValues]
    chargers: int
    charger_max_power_kw: float | None
    import_limit_kw: float
    subscribed_power_kw: float
    public_lighting: list[str]
    curfew: str | None
    buildings: list[str]
