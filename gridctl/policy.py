"""What an energy manager sets for a site: objective weights and limits, versioned.

Every number is finite and bounded, every instant lies in this century and every wall-clock time is the
site's local time without an offset: a policy that validates here is one the optimiser can use. What
depends on the site (its zones) or on the present (an event's dates) is checked by `site_problems` and
`event_problems`, when a policy is submitted and again when a stored one is put back in force.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
    create_model,
    model_validator,
)

from gridctl.config import models as m
from gridctl.config.models import ID_PATTERN, TimeWindow
from optimizer import Policy as Weights

# Bounds far beyond any district's figures, but small enough to keep the solver's numbers well scaled.
MAX_WEIGHT = 1_000_000.0
MAX_POWER_KW = 100_000.0
MAX_PRICE_EUR_PER_KWH = 1_000.0
MAX_ILLUMINANCE_LX = 2_000.0
MAX_EV_ENERGY_KWH = 200.0
# A policy lists the events it knows of: a season of Tempo red days (22 a year) fits.
MAX_EVENTS = 30
# A demand-response event lasts hours (EcoWatt, Tempo red days); a few days at most.
MAX_EVENT_DURATION = timedelta(days=3)
# Events are announced for the coming year at most.
MAX_EVENT_AHEAD = timedelta(days=366)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

WALL_CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
_WALL_CLOCK = re.compile(WALL_CLOCK_PATTERN)
ZoneId = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=64)]


def _wall_clock(value: Any) -> Any:
    # A time with an offset cannot be compared with the site's local times: the optimisation would fail.
    if isinstance(value, str):
        if not _WALL_CLOCK.match(value):
            raise ValueError("must be a local wall-clock time HH:MM or HH:MM:SS, without an offset (e.g. 22:00)")
        return time.fromisoformat(value)
    if not isinstance(value, time) or value.tzinfo is not None:
        raise ValueError("must be a local wall-clock time HH:MM or HH:MM:SS, without an offset (e.g. 22:00)")
    return value


def _instant(value: Any) -> Any:
    # A number would be read as seconds since 1970: an instant is written out, with its offset.
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date and time with an offset (e.g. 2026-01-15T17:00:00Z)")
    return value


WallClock = Annotated[time, BeforeValidator(_wall_clock),
                      WithJsonSchema({"type": "string", "pattern": WALL_CLOCK_PATTERN, "examples": ["22:00"]})]
Instant = Annotated[AwareDatetime, BeforeValidator(_instant)]
# A number, never a boolean or a numeric string read as one.
Number = Annotated[float, Strict()]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _bounded_weights() -> type[Weights]:
    """The optimiser's weights, each finite and at most MAX_WEIGHT, with the optimiser's own defaults."""
    config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    base = type("FiniteWeights", (Weights,), {"model_config": config, "__module__": __name__})
    fields: dict[str, Any] = {
        name: (Number, Field(info.default, ge=0, le=MAX_WEIGHT, description=info.description))
        for name, info in Weights.model_fields.items()
    }
    return create_model("PolicyWeights", __base__=base, __doc__=Weights.__doc__, **fields)


PolicyWeights = _bounded_weights()


class LocalWindow(TimeWindow):
    """A daily window in the site's local time, given as wall-clock times without an offset."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: WallClock
    end: WallClock


class ComfortBandC(_Model):
    min_temperature_c: Number = Field(ge=5, le=35)
    max_temperature_c: Number = Field(ge=5, le=35)

    @model_validator(mode="after")
    def _ordered(self) -> ComfortBandC:
        if self.min_temperature_c >= self.max_temperature_c:
            raise ValueError("min_temperature_c must be below max_temperature_c")
        return self


class ZoneComfort(_Model):
    occupied: ComfortBandC | None = None
    unoccupied: ComfortBandC | None = None
    # Local hours when the zone counts as occupied, replacing the site description's (and any learnt) ones.
    occupied_hours: list[LocalWindow] | None = Field(default=None, max_length=14)


class DemandResponse(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    start: Instant
    end: Instant
    max_import_kw: Number = Field(ge=0, le=MAX_POWER_KW)
    value_eur_per_kwh: Number = Field(ge=0, le=MAX_PRICE_EUR_PER_KWH)

    @model_validator(mode="after")
    def _ordered(self) -> DemandResponse:
        for name in ("start", "end"):
            moment = getattr(self, name)
            try:
                inside = EARLIEST <= moment.astimezone(UTC) < LATEST
            except OverflowError:
                inside = False
            if not inside:
                raise ValueError(f"{name} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_EVENT_DURATION:
            raise ValueError(f"an event lasts at most {MAX_EVENT_DURATION.days} days")
        return self


class SitePolicy(_Model):
    """The policy in force for a site. Limits left unset take the site description's values."""

    weights: PolicyWeights = PolicyWeights()  # type: ignore[valid-type]
    import_limit_kw: Number | None = Field(default=None, gt=0, le=MAX_POWER_KW)
    export_limit_kw: Number | None = Field(default=None, ge=0, le=MAX_POWER_KW)
    # Thermal zone id -> comfort bands replacing the site description's.
    comfort: dict[ZoneId, ZoneComfort] = Field(default_factory=dict)
    # Lighting zone id -> required illuminance while occupied (EN 12464-1: 500 lx for offices).
    lighting_required_lx: dict[ZoneId, Annotated[Number, Field(ge=0, le=MAX_ILLUMINANCE_LX)]] = Field(
        default_factory=dict)
    # The commune's curfew for public lighting, and the level allowed during it.
    public_lighting_curfew: LocalWindow | None = None
    public_lighting_curfew_level_pct: Number = Field(default=0.0, ge=0, le=100)
    # Energy every EV session gets before its departure when the car asks for at least that much.
    ev_minimum_energy_kwh: Number = Field(default=0.0, ge=0, le=MAX_EV_ENERGY_KWH)
    demand_response: list[DemandResponse] = Field(default_factory=list, max_length=MAX_EVENTS)
    # Highest power any one charger may give a car (the charger's own rating when unset or higher).
    ev_max_power_kw: Number | None = Field(default=None, gt=0, le=MAX_POWER_KW)
    # The connection's subscribed power replacing the site description's; above it each kW·h costs the
    # weights' overshoot price.
    subscribed_power_kw: Number | None = Field(default=None, gt=0, le=MAX_POWER_KW)
    # False: demand-response events are recorded but the site does not take part in them.
    demand_response_participation: Annotated[bool, Strict()] = True
    horizon_hours: Number = Field(default=24.0, ge=1, le=48)
    # Kelvin the plans keep inside every comfort band, so that the room itself, not only its sensor, stays
    # in the band: a room sensor's tolerance (IEC 60751 class B: ±0.4 K near 20 °C) and the local
    # controller's swing about its setpoint.
    comfort_margin_k: Number = Field(default=0.5, ge=0, le=2)
    step_minutes: Number = Field(default=15.0, ge=5, le=60)


class PolicyVersion(_Model):
    site_id: str
    version: int = Field(ge=1)
    policy: SitePolicy
    author: str
    comment: str = ""
    created_at: datetime


@dataclass(frozen=True)
class PolicyProblem:
    """Why a policy does not fit: the field (path inside the policy) and what is wrong."""

    loc: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        return f"{'.'.join(str(p) for p in self.loc)}: {self.message}"


def site_problems(policy: SitePolicy, site: m.Site) -> list[PolicyProblem]:
    """What in a policy names something the site does not have."""
    # Imported here: the adapters build problems from policies, so they import this module.
    from gridctl.assets import site_adapters

    defaults = {adapter.asset.id: adapter.policy_defaults() for adapter in site_adapters(site)}
    zones = {asset_id for asset_id, d in defaults.items() if d.comfort is not None}
    lighting = {asset_id for asset_id, d in defaults.items() if d.required_illuminance_lx is not None}
    problems = [PolicyProblem(("comfort", zone), f"the site has no thermal zone {zone!r}")
                for zone in policy.comfort if zone not in zones]
    problems += [PolicyProblem(("lighting_required_lx", zone), f"the site has no lighting zone {zone!r}")
                 for zone in policy.lighting_required_lx if zone not in lighting]
    seen: set[str] = set()
    for i, event in enumerate(policy.demand_response):
        if event.id in seen:
            problems.append(PolicyProblem(("demand_response", i, "id"), f"event id {event.id!r} appears twice"))
        seen.add(event.id)
    return problems


def event_problems(event: DemandResponse, now: datetime) -> list[PolicyProblem]:
    """What makes an event meaningless when announced now: already over, or more than a year ahead."""
    problems = []
    if event.end <= now:
        problems.append(PolicyProblem(("end",), "the event is already over"))
    if event.end > now + MAX_EVENT_AHEAD:
        problems.append(PolicyProblem(("end",), f"an event ends within {MAX_EVENT_AHEAD.days} days from now"))
    return problems


def submission_problems(policy: SitePolicy, site: m.Site, now: datetime) -> list[PolicyProblem]:
    """Everything a newly submitted policy must satisfy beyond its own model."""
    problems = site_problems(policy, site)
    for i, event in enumerate(policy.demand_response):
        problems += [PolicyProblem(("demand_response", i, *p.loc), p.message) for p in event_problems(event, now)]
    return problems


@dataclass(frozen=True)
class RejectedPolicy:
    """A stored version that no longer validates (rules or the site changed since): never put in force."""

    site_id: str
    version: int
    author: str
    comment: str
    created_at: datetime
    problem: str
    raw: str = ""


@dataclass(frozen=True)
class PolicyState:
    """The version in force (the newest that validates; None: the site's defaults) and the newer ones rejected."""

    in_force: PolicyVersion | None
    rejected: list[RejectedPolicy]


def policy_state(stored: Sequence[PolicyVersion | RejectedPolicy], site: m.Site) -> PolicyState:
    """Which of a site's stored versions (oldest first) is in force."""
    rejected: list[RejectedPolicy] = []
    for item in reversed(stored):
        if isinstance(item, PolicyVersion):
            problems = site_problems(item.policy, site)
            if not problems:
                return PolicyState(item, rejected[::-1])
            item = RejectedPolicy(item.site_id, item.version, item.author, item.comment, item.created_at,
                                  "; ".join(str(p) for p in problems), item.policy.model_dump_json())
        rejected.append(item)
    return PolicyState(None, rejected[::-1])
