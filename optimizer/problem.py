"""The optimiser's problem types and their JSON form (see FORMAT.md).

Per-step series are given either as one number (held over the horizon) or as a list with one value
per step. Times are timezone-aware and converted to UTC.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

# A number: a boolean or a numeric string is refused rather than read as 1.0 or parsed.
Number = Annotated[float, Strict()]
Count = Annotated[int, Strict()]
Series = Number | list[Number]
Flags = bool | list[bool]

# EN 13201 performance levels: road (M, cd/m²), pedestrian (P, lx), conflict areas (C, lx).
LIGHTING_CLASS_LEVELS: dict[str, float] = {
    "M1": 2.0, "M2": 1.5, "M3": 1.0, "M4": 0.75, "M5": 0.5, "M6": 0.3,
    "P1": 15.0, "P2": 10.0, "P3": 7.5, "P4": 5.0, "P5": 3.0, "P6": 2.0,
    "C0": 50.0, "C1": 30.0, "C2": 20.0, "C3": 15.0, "C4": 10.0, "C5": 7.5,
}


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class _Model(BaseModel):
    # NaN and infinity are refused wherever a number is expected: one NaN would poison the whole schedule.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Policy(_Model):
    """An energy manager's weights: € per unit of each objective term."""

    cost_weight: Number = Field(1.0, ge=0)
    carbon_eur_per_kg: Number = Field(0.0, ge=0)
    peak_eur_per_kw: Number = Field(0.0, ge=0)
    overshoot_eur_per_kw_h: Number = Field(12.41, ge=0)
    discomfort_eur_per_k_h: Number = Field(0.5, ge=0)
    ev_unmet_eur_per_kwh: Number = Field(1.0, ge=0)
    under_illumination_eur_per_lux_h: Number = Field(0.05, ge=0)
    public_lighting_eur_per_pct_h: Number = Field(1.0, ge=0)
    terminal_soc_eur_per_kwh: Number = Field(1.0, ge=0)
    deferrable_not_run_eur: Number = Field(100.0, ge=0)
    hot_water_shortfall_eur_per_k_h: Number = Field(1.0, ge=0)
    legionella_eur_per_k: Number = Field(10.0, ge=0)
    # Relief of a hard site limit only happens when nothing else can keep the site inside it.
    hard_limit_eur_per_kwh: Number = Field(1000.0, ge=0)
    # PV cut: a hundredth of a €/MWh, below any real price difference, so a plan curtails only when it
    # must (an export limit, a negative export price), never to break a tie with exporting for nothing.
    curtailment_eur_per_kwh: Number = Field(1e-5, ge=0)


class DemandResponseEvent(_Model):
    """Keep site import at or below `max_import_kw` in [start, end); each kWh above costs the value."""

    id: str
    start: AwareDatetime
    end: AwareDatetime
    max_import_kw: Number = Field(ge=0)
    value_eur_per_kwh: Number = Field(ge=0)

    _utc_times = field_validator("start", "end")(_utc)


class Site(_Model):
    import_limit_kw: Number | None = Field(None, ge=0)
    export_limit_kw: Number | None = Field(None, ge=0)
    subscribed_power_kw: Series | None = None
    load_kw: Series = 0.0
    import_price_eur_per_kwh: Series = 0.0
    export_price_eur_per_kwh: Series = 0.0
    carbon_kg_per_kwh: Series = 0.0


class Battery(_Model):
    type: Literal["battery"] = "battery"
    id: str
    capacity_kwh: Number = Field(gt=0)
    max_charge_kw: Number = Field(ge=0)
    max_discharge_kw: Number = Field(ge=0)
    charge_efficiency: Number = Field(0.95, gt=0, le=1)
    discharge_efficiency: Number = Field(0.95, gt=0, le=1)
    min_energy_kwh: Number = Field(0.0, ge=0)
    max_energy_kwh: Number | None = None
    initial_energy_kwh: Number = Field(ge=0)
    terminal_energy_kwh: Number | None = None
    cycling_cost_eur_per_kwh: Number = Field(0.0, ge=0)
    # Share of the stored energy lost per hour by itself (self-discharge, standby).
    standing_loss_per_h: Number = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _bounds(self) -> Battery:
        top = self.capacity_kwh if self.max_energy_kwh is None else self.max_energy_kwh
        if not self.min_energy_kwh <= top <= self.capacity_kwh:
            raise ValueError(f"battery {self.id}: need min_energy_kwh <= max_energy_kwh <= capacity_kwh")
        if self.initial_energy_kwh > self.capacity_kwh:
            raise ValueError(f"battery {self.id}: initial_energy_kwh above capacity")
        return self

    @property
    def top_kwh(self) -> float:
        return self.capacity_kwh if self.max_energy_kwh is None else self.max_energy_kwh


class EVSession(_Model):
    arrival: AwareDatetime
    departure: AwareDatetime
    energy_needed_kwh: Number = Field(ge=0)
    max_power_kw: Number | None = Field(None, gt=0)
    id: str | None = None

    _utc_times = field_validator("arrival", "departure")(_utc)


class EVCharger(_Model):
    """One charge point. Below `min_power_kw` (6 A) a charger does not charge: it is off or above it."""

    type: Literal["ev_charger"] = "ev_charger"
    id: str
    max_power_kw: Number = Field(gt=0)
    min_power_kw: Number = Field(0.0, ge=0)
    efficiency: Number = Field(1.0, gt=0, le=1)
    sessions: list[EVSession] = []

    @model_validator(mode="after")
    def _check(self) -> EVCharger:
        if self.min_power_kw > self.max_power_kw:
            raise ValueError(f"charger {self.id}: min_power_kw above max_power_kw")
        ordered = sorted(self.sessions, key=lambda s: s.arrival)
        for a, b in itertools.pairwise(ordered):
            if b.arrival < a.departure:
                raise ValueError(f"charger {self.id}: sessions overlap")
        for s in ordered:
            if s.departure <= s.arrival:
                raise ValueError(f"charger {self.id}: session departs before it arrives")
        return self


class EVPool(_Model):
    """Chargers behind one shared feeder limit."""

    type: Literal["ev_pool"] = "ev_pool"
    id: str
    max_power_kw: Number = Field(ge=0)
    charger_ids: list[str]


class ThermalZone(_Model):
    """A heated zone as an RC network with a heat pump.

    1R1C: air node (c_air) to outdoor through r_air_out. 2R2C: air node to an envelope/mass node through
    r_air_mass, mass node to outdoor through r_mass_out, and an optional direct air-to-outdoor path
    (ventilation) through r_air_out. Resistances in K/kW, capacities in kWh/K.
    """

    type: Literal["thermal_zone"] = "thermal_zone"
    id: str
    model: Literal["1R1C", "2R2C"] = "1R1C"
    c_air_kwh_per_k: Number = Field(gt=0)
    r_air_out_k_per_kw: Number | None = Field(None, gt=0)
    c_mass_kwh_per_k: Number | None = Field(None, gt=0)
    r_air_mass_k_per_kw: Number | None = Field(None, gt=0)
    r_mass_out_k_per_kw: Number | None = Field(None, gt=0)
    initial_temperature_c: Number
    initial_mass_temperature_c: Number | None = None
    outdoor_temperature_c: Series
    solar_gain_kw: Series = 0.0
    internal_gain_kw: Series = 0.0
    heat_pump_max_power_kw: Number = Field(ge=0)
    cop: Series | None = None
    supply_temperature_c: Number = 35.0
    carnot_fraction: Number = Field(0.55, gt=0, le=1)
    approach_k: Number = Field(5.0, ge=0)
    occupied: Flags = True
    comfort_occupied_c: tuple[Number, Number] = (19.0, 24.0)
    comfort_unoccupied_c: tuple[Number, Number] = (17.0, 26.0)

    @model_validator(mode="after")
    def _check(self) -> ThermalZone:
        if self.model == "1R1C" and self.r_air_out_k_per_kw is None:
            raise ValueError(f"zone {self.id}: 1R1C needs r_air_out_k_per_kw")
        if self.model == "2R2C" and None in (
            self.c_mass_kwh_per_k, self.r_air_mass_k_per_kw, self.r_mass_out_k_per_kw
        ):
            raise ValueError(f"zone {self.id}: 2R2C needs c_mass, r_air_mass and r_mass_out")
        for lo, hi in (self.comfort_occupied_c, self.comfort_unoccupied_c):
            if lo > hi:
                raise ValueError(f"zone {self.id}: comfort band low above high")
        return self


class DeferrableLoad(_Model):
    """An appliance that runs once, uninterrupted, with a given power profile (one value per step)."""

    type: Literal["deferrable"] = "deferrable"
    id: str
    earliest_start: AwareDatetime
    finish_by: AwareDatetime
    power_profile_kw: list[Number] = Field(min_length=1)

    _utc_times = field_validator("earliest_start", "finish_by")(_utc)


class LightingZone(_Model):
    """Indoor lighting: illuminance = daylight + max_illuminance × dimming; power ∝ dimming."""

    type: Literal["lighting_zone"] = "lighting_zone"
    id: str
    installed_power_kw: Number = Field(ge=0)
    max_illuminance_lux: Number = Field(gt=0)
    required_illuminance_lux: Number = Field(500.0, ge=0)
    occupied: Flags = True
    daylight_lux: Series = 0.0
    dr_dimming_allowance_pct: Number = Field(20.0, ge=0, le=20)


class PublicLightingCircuit(_Model):
    """Street lighting: the level follows the EN 13201 class of each period, relative to the design class.

    Lit when `dark`, at the class's level and never below `min_safety_pct`. During the commune's `curfew`
    the level is at most `curfew_level_pct`: a cap, never a requirement (below the class's level it is
    the commune's choice, not a shortfall).
    """

    type: Literal["public_lighting"] = "public_lighting"
    id: str
    installed_power_kw: Number = Field(ge=0)
    design_class: str = "M3"
    lighting_class: str | list[str] = "M3"
    dark: Flags = True
    curfew: Flags = False
    curfew_level_pct: Number = Field(0.0, ge=0, le=100)
    min_safety_pct: Number = Field(20.0, ge=0, le=100)

    @model_validator(mode="after")
    def _check(self) -> PublicLightingCircuit:
        classes = [self.lighting_class] if isinstance(self.lighting_class, str) else self.lighting_class
        for c in {self.design_class, *classes}:
            if c != "off" and c not in LIGHTING_CLASS_LEVELS:
                raise ValueError(f"circuit {self.id}: unknown lighting class {c!r}")
        for c in set(classes) - {"off"}:
            if c[0] != self.design_class[0]:
                raise ValueError(f"circuit {self.id}: class {c} not comparable with {self.design_class}")
        return self


class HotWaterTank(_Model):
    """A domestic hot-water tank, fully mixed, with a resistive element (cop 1) or a heat pump.

    The state is the heat stored above cold water, E = C·(T − T_cold) with C = 1.163 Wh/(l·K) × volume:
    heating adds cop × power, a draw of d litres at the tank's temperature replaces them with cold water,
    a draw of a fixed heat takes it whatever the temperature, and standing losses are UA·(T − T_ambient);
    all linear in E (see FORMAT.md and hot_water.py).
    """

    type: Literal["hot_water_tank"] = "hot_water_tank"
    id: str
    volume_l: Number = Field(gt=0)
    heater_max_power_kw: Number = Field(ge=0)
    cop: Series = 1.0
    # True: a contactor switches the element fully on or off (binary); false: the power modulates.
    on_off: bool = True
    heating_allowed: Flags = True
    standing_loss_kw_per_k: Number = Field(ge=0)
    ambient_temperature_c: Series = 20.0
    cold_water_temperature_c: Number = 12.0
    initial_temperature_c: Number
    min_temperature_c: Series = 40.0
    max_temperature_c: Number = 65.0
    draw_l: Series = 0.0
    # Heat drawn whatever the tank's temperature (water mixed to a set temperature at the tap or by a
    # thermostatic valve), kWh above cold water per step.
    draw_kwh: Series = 0.0
    legionella_temperature_c: Number = 60.0
    legionella_due_by: AwareDatetime | None = None

    @field_validator("legionella_due_by")
    @classmethod
    def _utc_due(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    @model_validator(mode="after")
    def _check(self) -> HotWaterTank:
        def values(v: Series) -> list[float]:
            return v if isinstance(v, list) else [v]

        if min(values(self.cop), default=1.0) <= 0:
            raise ValueError(f"tank {self.id}: cop must be positive")
        if min(values(self.draw_l), default=0.0) < 0:
            raise ValueError(f"tank {self.id}: draw_l must not be negative")
        if min(values(self.draw_kwh), default=0.0) < 0:
            raise ValueError(f"tank {self.id}: draw_kwh must not be negative")
        if self.max_temperature_c <= self.cold_water_temperature_c:
            raise ValueError(f"tank {self.id}: max_temperature_c must be above cold_water_temperature_c")
        if max(values(self.min_temperature_c), default=0.0) > self.max_temperature_c:
            raise ValueError(f"tank {self.id}: min_temperature_c above max_temperature_c")
        if self.legionella_temperature_c > self.max_temperature_c:
            raise ValueError(f"tank {self.id}: legionella_temperature_c above max_temperature_c")
        return self


class PV(_Model):
    type: Literal["pv"] = "pv"
    id: str
    forecast_kw: Series
    curtailable: bool = True


Asset = Annotated[
    Battery
    | EVCharger
    | EVPool
    | ThermalZone
    | DeferrableLoad
    | LightingZone
    | PublicLightingCircuit
    | HotWaterTank
    | PV,
    Field(discriminator="type"),
]


class Problem(_Model):
    """One scheduling problem: horizon, site, policy, assets and demand-response events."""

    start: AwareDatetime
    n_steps: Count | None = Field(None, gt=0)
    step_minutes: Number = Field(15.0, gt=0)
    step_durations_min: list[Number] | None = None
    site: Site
    policy: Policy = Policy()
    assets: list[Asset] = []
    dr_events: list[DemandResponseEvent] = []

    _utc_start = field_validator("start")(_utc)

    @model_validator(mode="after")
    def _check(self) -> Problem:
        if self.step_durations_min is None and self.n_steps is None:
            raise ValueError("give n_steps or step_durations_min")
        if self.step_durations_min is not None:
            if any(d <= 0 for d in self.step_durations_min):
                raise ValueError("step durations must be positive")
            if self.n_steps is not None and self.n_steps != len(self.step_durations_min):
                raise ValueError("n_steps disagrees with step_durations_min")
        ids = [a.id for a in self.assets]
        if len(ids) != len(set(ids)):
            raise ValueError("asset ids must be unique")
        chargers = {a.id for a in self.assets if isinstance(a, EVCharger)}
        for pool in (a for a in self.assets if isinstance(a, EVPool)):
            missing = set(pool.charger_ids) - chargers
            if missing:
                raise ValueError(f"pool {pool.id}: unknown chargers {sorted(missing)}")
        self._check_lengths()
        return self

    def _check_lengths(self) -> None:
        n = self.steps
        objs: list[BaseModel] = [self.site, *self.assets]
        for obj in objs:
            for name, value in obj:
                if isinstance(value, list) and value and not isinstance(value[0], BaseModel):
                    if name in ("power_profile_kw", "charger_ids"):
                        continue
                    if len(value) != n:
                        label = getattr(obj, "id", "site")
                        raise ValueError(f"{label}.{name}: {len(value)} values for {n} steps")

    @property
    def steps(self) -> int:
        return len(self.step_durations_min) if self.step_durations_min is not None else int(self.n_steps or 0)

    def durations_h(self) -> list[float]:
        if self.step_durations_min is not None:
            return [d / 60.0 for d in self.step_durations_min]
        return [self.step_minutes / 60.0] * self.steps

    def step_starts(self) -> list[datetime]:
        """Start time of each step, plus the end of the horizon as the last element."""
        out = [self.start]
        for h in self.durations_h():
            out.append(out[-1] + timedelta(hours=h))
        return out

    def series(self, value: Series | None, default: float = 0.0) -> list[float]:
        if value is None:
            return [default] * self.steps
        if isinstance(value, list):
            return [float(v) for v in value]
        return [float(value)] * self.steps

    def flags(self, value: Flags) -> list[bool]:
        return list(value) if isinstance(value, list) else [bool(value)] * self.steps

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> Problem:
        return cls.model_validate_json(text)


class Settings(_Model):
    """How to solve: solver, time limit and MIP gap (relative)."""

    solver: Literal["highs", "cbc"] = "highs"
    fallback: bool = True
    time_limit_s: Number = Field(30.0, gt=0)
    mip_gap: Number = Field(1e-3, ge=0)
    threads: Count | None = Field(None, gt=0)
    msg: bool = False
    # "auto" adds a charge/discharge binary only on steps where wasting energy in the battery could pay.
    battery_exclusivity: Literal["always", "auto"] = "auto"
    hard_limit_tolerance: Number = Field(1e-4, ge=0)
    # "auto" switches to the LP-rounding start (see rounding.py) above this many binaries.
    strategy: Literal["auto", "mip", "rounding"] = "auto"
    rounding_above_binaries: Count = Field(300, ge=0)
    # "auto" splits districts with more assets than this into sub-districts (see decompose.py).
    decompose: Literal["auto", "never", "always"] = "auto"
    decompose_above_assets: Count = Field(300, ge=1)
    group_size: Count = Field(100, ge=1)
    workers: Count = Field(1, ge=1)
    coordination_passes: Count = Field(1, ge=0)

