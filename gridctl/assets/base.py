"""The one interface every asset type implements, and what the service hands it.

An adapter wraps one asset of the site file and answers, for its type only: which points it reads
(and which must be fresh to follow a plan), what it contributes to the forecasts, its part of the
optimiser's problem, how a schedule row or its fallback becomes write requests, the KPIs it adds
and its site-file checks. The service iterates adapters and never asks what type an asset is.

Optional capabilities have harmless defaults (nothing to observe, no KPI, no check), so a new type
implements what it has and nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd

import optimizer as opt
from drivers.base import Value
from gridctl.config import models as m
from gridctl.config.roles import Role
from gridctl.config.units import UNITS
from gridctl.dispatch import WriteRequest
from gridctl.forecast.forecasts import EvSessionForecast, Forecasts
from gridctl.policy import SitePolicy
from gridctl.runtime import PlannedSchedule
from gridctl.service.snapshot import Snapshot

if TYPE_CHECKING:
    from gridctl.config.yamlsource import PathKey
    from gridctl.simulate.kpi import Kpis

A = TypeVar("A", bound=m.AssetBase)
# The latest value of a point as a number, None when unknown (a snapshot's, or a stored row's).
Number = Callable[[str], float | None]
IsDark = Callable[[datetime], bool]
# Below this clear-sky irradiance the sky's state can't be read from a sensor.
MIN_CLEAR_SKY_W_M2 = 50.0
# Below this share of the required illuminance a lit place counts as under-lit (KPIs).
ILLUMINANCE_TOLERANCE = 0.95


def power_kw(site: m.Site, number: Number, address: str | None) -> float:
    """A power point's value in kW (0 when unknown), whatever unit the device reports."""
    if not address:
        return 0.0
    value = number(address)
    if value is None:
        return 0.0
    # Divide by the unit's exact size (1000 for W): 0.001 is not a binary fraction, so multiplying by it
    # would round twice.
    return value / (1.0 / UNITS[site.point(address).unit][1])


def present(points: Mapping[str, str], roles: Sequence[str]) -> set[str]:
    """Addresses bound to any of `roles`."""
    return {points[role] for role in roles if role in points}


# --------------------------------------------------------------------------- controller memory


@dataclass
class AssetMemory:
    """What the controller remembers between cycles that the devices don't tell (e.g. runs done),
    one small dict per asset, owned by its adapter."""

    by_asset: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of(self, asset_id: str) -> dict[str, Any]:
        return self.by_asset.setdefault(asset_id, {})


# --------------------------------------------------------------------------- optimiser problem


@dataclass(frozen=True)
class ProblemContext:
    site: m.Site
    policy: SitePolicy
    snapshot: Snapshot
    forecasts: Forecasts
    memory: AssetMemory

    @property
    def tz(self) -> ZoneInfo:
        return self.site.tz

    @property
    def start(self) -> datetime:
        return self.forecasts.start

    @property
    def step(self) -> timedelta:
        return self.forecasts.step

    @property
    def end(self) -> datetime:
        return self.forecasts.start + self.forecasts.step * self.forecasts.n_steps

    @property
    def mids(self) -> list[datetime]:
        """The middle of every step of the horizon."""
        return [self.start + self.step * k + self.step / 2 for k in range(self.forecasts.n_steps)]


# --------------------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class DispatchContext:
    """One cycle's view for turning a plan (or its absence) into write requests.

    `row` is the schedule's current step when the asset follows a plan, None on its safe default or
    baseline. `correct` allows the between-plans corrections (forecast errors absorbed by dispatch)."""

    site: m.Site
    snapshot: Snapshot
    now: datetime
    is_dark: IsDark
    reason: str
    actor: str
    planned: PlannedSchedule | None = None
    row: pd.Series | None = None
    import_limit_kw: float = math.inf
    correct: bool = True
    # The policy in force (comfort bands, margins); the site file's defaults when None.
    policy: SitePolicy | None = None

    @property
    def tz(self) -> ZoneInfo:
        return self.site.tz

    def request(self, address: str, value: float | bool) -> WriteRequest:
        planned = self.planned
        return WriteRequest(address, value, self.actor, self.reason,
                            schedule_id=planned.schedule_id if planned else None,
                            policy_version=planned.policy_version if planned else None)

    def planned_value(self, column: str, row: pd.Series | None = None) -> float | None:
        """A column of the current step (or of `row`), None when absent or NaN."""
        source = self.row if row is None else row
        value = None if source is None else source.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return float(value)

    def next_row(self) -> pd.Series | None:
        """The schedule's step after the current one."""
        if self.planned is None:
            return None
        frame = self.planned.schedule.setpoints
        position = int(frame.index.searchsorted(pd.Timestamp(self.now), side="right"))
        return frame.iloc[position] if position < len(frame) else None

    def step_elapsed(self) -> float:
        """The share of the current step already past (0 at its start): where a duty cycle stands."""
        if self.planned is None or self.row is None:
            return 0.0
        index = self.planned.schedule.setpoints.index
        position = int(index.get_loc(self.row.name))
        if len(index) < 2:
            return 0.0
        following = position + 1 if position + 1 < len(index) else position
        step = index[following] - index[following - 1]
        return min(max((pd.Timestamp(self.now) - self.row.name) / step, 0.0), 1.0)

    def ahead(self) -> pd.DataFrame:
        """The schedule from the current step on."""
        assert self.planned is not None and self.row is not None
        frame = self.planned.schedule.setpoints
        return frame[frame.index >= self.row.name]


# --------------------------------------------------------------------------- forecasts


@dataclass(frozen=True)
class ObservationBatch:
    """A batch of observations, with the sky read from them, handed to each asset's forecast model.

    Observations are quarter-hour means (their `moments` are the quarters' middles), whatever the
    cadence of the control cycle. `index` maps an observation's position to its clear-sky index,
    `ghi_w_m2` to the irradiance that index implies; `from_sensor` is true when it came from an
    irradiance sensor. `clear_sky_ghi_w_m2` is the clear-sky irradiance at every moment."""

    moments: list[datetime]
    temperature_c: list[float | None]
    index: dict[int, float]
    ghi_w_m2: dict[int, float]
    from_sensor: bool
    clear_sky_ghi_w_m2: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ForecastContext:
    site: m.Site
    snapshot: Snapshot
    start: datetime
    step: timedelta
    n_steps: int
    mids: list[datetime]
    # Per step: clear-sky index forecast, global horizontal irradiance, outdoor temperature.
    clear_sky_index: list[float]
    ghi_w_m2: list[float]
    outdoor_temperature_c: list[float]


@dataclass
class AssetForecast:
    """One asset's part of the forecasts (what it leaves empty, it doesn't need)."""

    pv_kw: list[float] | None = None
    daylight_lux: list[float] | None = None
    occupied: list[bool] | None = None
    ev_sessions: list[EvSessionForecast] = field(default_factory=list)
    # Any other per-step series the asset's problem reads (e.g. hot-water draws), by name.
    series: dict[str, list[float]] = field(default_factory=dict)
    # What the model learnt of the asset's own plant that its problem uses (a zone's identified thermal model).
    identified: Any | None = None


class ForecastModel:
    """What one asset learns from observations to forecast its part (state kept between cycles).

    The site forecaster (`gridctl.forecast.forecaster.SignalForecaster`) calls `track` every live
    cycle, `sample` once per quarter-hour on the quarter's means of fresh readings (live and from
    stored history alike), `learn` on batches of those samples, `maintain` before forecasting (off
    the event loop), then `forecast`; `measured` tells what its forecast should have said (accuracy).
    """

    # Whether this asset's output can tell the sky when the site has no irradiance sensor.
    reads_sky: ClassVar[bool] = False

    def track(self, snapshot: Snapshot) -> None:
        """Every live cycle (not during warm-up): follow what only the present shows (a car plugging in)."""

    def sample(self, number: Number) -> Any | None:
        """What one observation records for learning later in a batch; None when nothing."""
        return None

    def sky_index(self, moments: list[datetime], samples: list[Any | None], sunny: list[int],
                  temperature_c: list[float | None]) -> dict[int, float]:
        """Clear-sky index per observation read from this asset's output (when `reads_sky`)."""
        return {}

    def learn(self, batch: ObservationBatch, samples: list[Any | None]) -> None:
        """Learn from a batch of observations (samples aligned with `batch.moments`)."""

    def maintain(self, now: datetime) -> None:
        """Periodic learning too heavy for every observation (a daily refit), run in a worker thread."""

    def measured(self, sample: Any | None) -> dict[str, float]:
        """What the sample shows of the quantities this model forecasts (e.g. `{"pv_kw": 12.0}`), so the
        forecaster can score its forecasts; empty when the sample can't tell (a curtailed array)."""
        return {}

    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        return AssetForecast()


# --------------------------------------------------------------------------- KPIs


class PhysicsKpis(Protocol):
    """One asset's share of a closed-loop run's KPIs, read from the simulation's true state."""

    def step(self, kpis: Kpis, middle: datetime, hours: float) -> None: ...

    def finish(self, kpis: Kpis, start: datetime, end: datetime) -> None: ...


@dataclass(frozen=True)
class KpiPart:
    """An asset's contribution to a site KPI of the API; parts of the same name are summed.

    `dwellings` counts the dwellings whose private data the part comes from (an asset of a dwelling: 1);
    a KPI summed over fewer than the minimum of a building aggregate is withheld."""

    value: float
    unit: str
    note: str
    dwellings: int = 0


Hourly = Callable[[str, str], pd.Series]


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class PolicyDefaults:
    """What the site file sets for an asset that a policy may override (the policy form's defaults)."""

    # Occupied band, unoccupied band and occupied hours of a zone with comfort bands.
    comfort: tuple[m.ComfortBand, m.ComfortBand, list[m.TimeWindow]] | None = None
    # EV chargers whose power a policy may cap.
    chargers: tuple[m.EvCharger, ...] = ()
    # Street lighting, subject to a policy's curfew; `curfew` is the site file's.
    street_lighting: bool = False
    curfew: m.TimeWindow | None = None
    # Indoor lighting zone: the illuminance the site file requires, which a policy may change.
    required_illuminance_lx: float | None = None


# --------------------------------------------------------------------------- site-file checks


class SiteCheck(Protocol):
    """What an adapter's site-file checks may use (errors carry file, line and field path)."""

    def report(self, path: PathKey, message: str) -> None: ...

    def roles(self, path: PathKey, bound: Mapping[str, str], roles: Mapping[str, Role], owner: str) -> None: ...

    def unique(self, path: PathKey, ids: Sequence[str], what: str) -> None: ...

    def point(self, address: str) -> m.Point | None: ...


# --------------------------------------------------------------------------- the adapter


class AssetAdapter(Generic[A]):
    """One asset of the site file, seen through its type's adapter."""

    # The site file's `type` tag and model class this adapter serves (the registry checks both).
    type: ClassVar[str]
    model: ClassVar[type[m.AssetBase]]
    # What each role of the asset's own points must be (unit, kind, writability).
    roles: ClassVar[Mapping[str, Role]]
    # A soft-constraint violation of this asset within the next hour raises a comfort alarm.
    comfort_alarm: ClassVar[bool] = False
    # The kind of equipment it counts as in the operators' power flows (`gridctl.api.overview.FLOW_KINDS`).
    flow: ClassVar[str] = "appliances"

    def __init__(self, asset: A, site: m.Site) -> None:
        self.asset = asset
        self.site = site

    @property
    def id(self) -> str:
        return self.asset.id

    # ------------------------------------------------------------------ inputs

    def watched_points(self) -> list[str]:
        """Points that must be fresh for the asset to follow a plan; stale → its safe default."""
        return []

    def observe(self, snapshot: Snapshot, memory: AssetMemory) -> None:
        """Every dispatch cycle, before the commands: keep what the devices show now that later problems and
        commands need and no device keeps (when a tank last reached its disinfection temperature)."""

    def stale_points(self, snapshot: Snapshot) -> list[str]:
        return [address for address in self.watched_points() if not snapshot.is_fresh(address)]

    def observed_points(self) -> set[str]:
        """Points the forecaster learns from (read from history at start)."""
        return set()

    def power_points(self) -> list[str]:
        """Its measured power points, as its devices report them (the operators' power flows)."""
        return []

    def power_kw(self, number: Number) -> float:
        """Power the asset draws now (battery charging positive, PV negative): load gridctl schedules."""
        return 0.0

    def replan_points(self) -> set[str]:
        """Points whose change may call for a new plan at once."""
        return set()

    def replan_on(self, address: str, before: Value | None, after: Value | None) -> bool:
        """Whether replan point `address` going from `before` to `after` calls for a new plan (a car arriving)."""
        return False

    def irradiance_point(self) -> str | None:
        """An irradiance sensor the site's sky is read from."""
        return None

    def forecast_model(self, history_days: int) -> ForecastModel | None:
        return None

    # ------------------------------------------------------------------ optimiser

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        """The asset's part of the optimiser's problem (none when it has nothing to schedule now)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ dispatch

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        """Write requests for the schedule's current step (`ctx.row`), with the between-plans corrections."""
        raise NotImplementedError

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        """Commands without a usable plan: stale inputs, no valid schedule, optimiser failure."""
        raise NotImplementedError

    def baseline(self, ctx: DispatchContext) -> list[WriteRequest]:
        """What the equipment does without gridctl (the simulation's baseline controller)."""
        raise NotImplementedError

    def uncontrolled(self, ctx: DispatchContext) -> list[WriteRequest]:
        """What the equipment does with no energy management at all (a backtest's "no control" baseline):
        its own rule unless that rule is itself energy management."""
        return self.baseline(ctx)

    def hold(self, requests: list[WriteRequest], now: datetime, memory: AssetMemory) -> list[WriteRequest]:
        """Amend this cycle's requests before they are written (a started program runs to its end)."""
        return requests

    def remember(self, requests: list[WriteRequest], now: datetime, memory: AssetMemory) -> None:
        """Note what was commanded this cycle, for the next problems."""

    # ------------------------------------------------------------------ KPIs

    def physics_kpis(self, physics: Any, kpis: Kpis) -> PhysicsKpis | None:
        """The asset's share of a simulated run's KPIs (`physics`: sim.physics.district.DistrictPhysics)."""
        return None

    def history_points(self) -> list[str]:
        """Points whose hourly rollups `history_kpis` reads."""
        return []

    def history_kpis(self, hourly: Hourly) -> dict[str, KpiPart]:
        """Site KPIs from hourly rollups: `hourly(address, column)` is a series by hour."""
        return {}

    # ------------------------------------------------------------------ policy, site file

    def policy_defaults(self) -> PolicyDefaults:
        return PolicyDefaults()

    def check(self, checks: SiteCheck, path: PathKey) -> None:
        """Checks beyond the asset's own roles (those are checked for every asset)."""
