"""The API's request and response bodies, kept apart from storage rows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    granted: bool


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


class LivePoint(BaseModel):
    address: str
    value: float | str | bool | None
    unit: str
    quality: str
    ts: datetime
    age_s: float
    error: str | None = None


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
    kind: str = Field(max_length=64)
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


class ScheduleOut(BaseModel):
    site_id: str
    schedule_id: str | None
    created_at: datetime | None
    valid_until: datetime | None
    policy_version: int | None
    status: str
    objective_eur: float
    objective: dict[str, Any]
    violations: list[dict[str, Any]]
    steps: list[datetime]
    series: dict[str, list[float | None]]


class HandsOffRequest(Body):
    scope: str = Field(max_length=200, description="`site`, `device:<id>` or `point:<device>/<point>`")
    reason: str = Field(min_length=1, max_length=500)


class HandsOffOut(BaseModel):
    scopes: list[str]
    relinquished: list[str] = []


class PolicyChange(Body):
    policy: SitePolicy
    comment: str = Field(default="", max_length=1000)


class PolicyPreviewRequest(Body):
    policy: SitePolicy


class PolicyVersionOut(BaseModel):
    site_id: str
    version: int | None
    author: str | None
    comment: str
    created_at: datetime | None
    policy: SitePolicy
    changed: list[str]


class DemandResponseOut(BaseModel):
    site_id: str
    event: DemandResponse
    created_by: str
    created_at: datetime


class Kpi(BaseModel):
    value: float | None
    unit: str
    note: str | None = None


class KpisOut(BaseModel):
    site_id: str
    start: date
    end: date
    kpis: dict[str, Kpi]


class OpenDay(BaseModel):
    day: date
    energy_kwh: float | None
    dwellings_reporting: int


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
