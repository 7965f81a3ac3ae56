"""Replay one controller over a recorded period, step by step, on the replayed plant.

Every step `t`: the devices' readings (the last step's averages, the state of now) → the controller's
commands through the same adapters as `gridctl run` (`gridctl.service.planner`) → the plant runs the
step with what was recorded in it. gridctl's forecaster is the service's (`SignalForecaster`), fed only
snapshots of the past and, for the series it forecasts from the recording (spot prices, carbon), a
`PastView` cut at `t`: nothing it is given holds anything recorded after `t`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

import optimizer as opt
from gridctl.assets import AssetMemory, site_adapters
from gridctl.backtest.plant import Plant, clamp_to_point, from_unit
from gridctl.backtest.recording import CARBON, EXPORT_PRICE, PRICE, PastView, Recording
from gridctl.config import models as m
from gridctl.dispatch import WriteRequest
from gridctl.forecast.carbon import carbon_intensity
from gridctl.forecast.forecaster import SignalForecaster
from gridctl.forecast.forecasts import Forecasts
from gridctl.forecast.prices import tariff_prices
from gridctl.forecast.sun import dark_by_sun
from gridctl.policy import SitePolicy
from gridctl.runtime import PlannedSchedule
from gridctl.service import planner
from gridctl.service.problem import build_problem

Controller = Literal["baseline", "gridctl", "oracle"]
CONTROLLERS: tuple[Controller, ...] = ("baseline", "gridctl", "oracle")
# Called with the number of steps done so far.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class BacktestSettings:
    start: datetime
    end: datetime
    horizon_hours: float = 24.0
    # How often gridctl plans; None: every step of the data, and at least every 15 minutes as `run` does.
    replan_every: timedelta | None = None
    # Days of history before the start gridctl's forecasts learn from (when the data has them).
    history_days: float = 8.0
    initial_soc_pct: float = 50.0
    # "uncontrolled": no energy management (batteries idle, cars charged on arrival); "rules": the site's
    # equipment's own rules (each adapter's baseline, e.g. batteries in self-consumption).
    baseline: Literal["uncontrolled", "rules"] = "uncontrolled"
    solver: opt.Settings = field(default_factory=lambda: opt.Settings(time_limit_s=20.0, mip_gap=0.005))
    oracle_solver: opt.Settings = field(default_factory=lambda: opt.Settings(time_limit_s=3600.0, mip_gap=1e-4))
    # None: the oracle solves the whole period at once (a bound); else blocks of this many days.
    oracle_block_days: float | None = None
    oracle_overlap_days: float = 1.0
    # For analysis only (not a controller anyone can run): gridctl plans with what was recorded instead of
    # its forecasts of these ("load", "pv", "prices": import and export prices and carbon), to tell
    # forecast error apart from planning choices.
    perfect_forecasts: frozenset[str] = frozenset()


@dataclass
class Replay:
    """What one controller did: every step's flows and commands, and the plant at the end."""

    controller: str
    trace: pd.DataFrame
    plant: Plant
    wall_s: float = 0.0
    # Processor time it took (HiGHS's threads included): what wall time would be on an idle machine.
    cpu_s: float = 0.0
    plans: int = 0
    plan_failures: int = 0
    # The oracle's plan: objective, proven gap, whether it is a bound.
    oracle: dict[str, object] | None = None


def policy_for(site: m.Site, recording: Recording, settings: BacktestSettings) -> SitePolicy:
    """The policy gridctl and the oracle plan with: the default weights, steps of the data's length."""
    step_min = max(5.0, min(60.0, recording.step.total_seconds() / 60.0))
    return SitePolicy(horizon_hours=settings.horizon_hours, step_minutes=step_min)


def truth(site: m.Site, recording: Recording, first: int, last: int) -> dict[str, np.ndarray]:
    """Prices and carbon intensity as they were over rows first..last-1 (the tariff's when not recorded)."""
    step = recording.step
    mids = [recording.start + step * k + step / 2 for k in range(first, last)]
    out: dict[str, np.ndarray] = {}
    if recording.has(PRICE):
        out[PRICE] = recording.values(PRICE, first, last)
    else:
        out[PRICE] = np.asarray(tariff_prices(site.tariff, mids, site.tz))
    out[EXPORT_PRICE] = recording.values(EXPORT_PRICE, first, last) if recording.has(EXPORT_PRICE) else \
        np.full(last - first, site.tariff.export_price_eur_per_kwh)
    out[CARBON] = recording.values(CARBON, first, last) if recording.has(CARBON) else \
        np.asarray(carbon_intensity(mids, site.tz))
    return out


class _Commands:
    """Writes adapters' requests to the plant within each point's limits, and keeps the adapters' memory."""

    def __init__(self, site: m.Site, plant: Plant) -> None:
        self.site, self.plant = site, plant
        self.adapters = site_adapters(site)
        self.memory = AssetMemory()
        self.last: dict[str, float] = {}

    def apply(self, requests: list[WriteRequest], now: datetime) -> None:
        for adapter in self.adapters:
            requests = adapter.hold(requests, now, self.memory)
        for request in requests:
            value = clamp_to_point(self.site, request.address, request.value)
            self.plant.write(request.address, value)
            self.last[request.address] = float(value)
        for adapter in self.adapters:
            adapter.remember(requests, now, self.memory)


class _PastSignals:
    """Spot prices and carbon forecast for gridctl from the recording as known at the current step."""

    def __init__(self, site: m.Site, recording: Recording) -> None:
        self.site, self.recording = site, recording
        self.view: PastView = recording.view(recording.start)

    def spot(self, moments: Sequence[datetime]) -> list[float]:
        return self.view.profile(PRICE, moments, self.site.tz)

    def carbon(self, moments: Sequence[datetime]) -> list[float] | None:
        return self.view.profile(CARBON, moments, self.site.tz) if self.recording.has(CARBON) else None


async def replay(site: m.Site, recording: Recording, settings: BacktestSettings, controller: Controller,
                 progress: Progress | None = None) -> Replay:
    """Run `controller` from `settings.start` to `settings.end` on the replayed plant."""
    import time

    if controller == "oracle":
        from gridctl.backtest.oracle import replay_oracle

        return await replay_oracle(site, recording, settings, progress)
    began, began_cpu = time.perf_counter(), time.process_time()
    step = recording.step
    first, last = recording.position(settings.start), recording.position(settings.end)
    plant = Plant(site, recording, settings.initial_soc_pct)
    commands = _Commands(site, plant)
    is_dark = dark_by_sun(site)
    policy = policy_for(site, recording, settings)
    plan_step = timedelta(minutes=policy.step_minutes)
    n_steps = int(timedelta(hours=policy.horizon_hours) / plan_step)
    replan_every = settings.replan_every or max(step, timedelta(minutes=15))
    signals = _PastSignals(site, recording)
    forecaster: SignalForecaster | None = None
    if controller == "gridctl":
        forecaster = SignalForecaster(spot_eur_per_kwh=signals.spot if site.tariff.kind == "spot" else None)
        _warm_up(forecaster, plant, site, recording, first, settings.history_days)
    planned: PlannedSchedule | None = None
    # Each horizon's LP starts from the previous one's basis: same structure, data one step on.
    warm_start: opt.WarmStart | None = None
    next_plan = settings.start
    rows: list[dict[str, float]] = []
    plans = failures = 0
    for position in range(first, last):
        now = recording.start + step * position
        if forecaster is not None:
            signals.view = recording.view(now)
            observed = plant.snapshot(now, taken_at=now - step / 2)
            forecaster.observe(site, observed)
            if now >= next_plan:
                foresight = _foresight(site, recording, plant, position, settings.perfect_forecasts)
                schedule = await _plan(forecaster, signals, site, policy, observed, now, n_steps, plan_step,
                                       commands.memory, settings.solver, warm_start, foresight)
                plans += 1
                warm_start = None if schedule is None else schedule.warm_start
                if schedule is None:
                    failures += 1
                else:
                    planned = PlannedSchedule(f"backtest-{now:%Y%m%dT%H%M}", site.id, now, now + 3 * replan_every,
                                              None, schedule)
                next_plan = now + replan_every
            # Between plans the service corrects the plan with what it measures; when it plans every step
            # there is nothing between plans to correct.
            requests = planner.plan(site, planned, plant.snapshot(now), now, is_dark,
                                    correct=replan_every > step, policy=policy).requests
        elif settings.baseline == "rules":
            requests = planner.baseline(site, plant.snapshot(now), now, is_dark)
        else:
            requests = planner.uncontrolled(site, plant.snapshot(now), now, is_dark)
        commands.apply(requests, now)
        flows = plant.advance(position, now, step)
        rows.append({**flows.values, **{f"command:{a}": v for a, v in commands.last.items()}})
        if progress is not None:
            progress(position - first + 1)
    trace = _trace(rows, recording, first, last)
    return Replay(controller, trace, plant, wall_s=time.perf_counter() - began, cpu_s=time.process_time() - began_cpu,
                  plans=plans, plan_failures=failures)


async def _plan(forecaster: SignalForecaster, signals: _PastSignals, site: m.Site, policy: SitePolicy,
                observed, now: datetime, n_steps: int, plan_step: timedelta, memory: AssetMemory,
                solver: opt.Settings, warm_start: opt.WarmStart | None = None,
                foresight: Callable[[Forecasts], Forecasts] | None = None) -> opt.Schedule | None:
    forecasts = await forecaster.forecast(site, observed, now, n_steps, plan_step)
    carbon = signals.carbon([now + plan_step * k + plan_step / 2 for k in range(n_steps)])
    if carbon is not None:
        forecasts = dataclasses.replace(forecasts, carbon_kg_per_kwh=carbon)
    if foresight is not None:
        forecasts = foresight(forecasts)
    problem = build_problem(site, policy, observed, forecasts, memory)
    schedule = opt.solve(problem, solver, warm_start)
    return schedule if schedule.has_solution else None


def _foresight(site: m.Site, recording: Recording, plant: Plant, position: int,
               perfect: frozenset[str]) -> Callable[[Forecasts], Forecasts] | None:
    """What replaces gridctl's forecasts of `perfect` with the recording's (analysis only)."""
    unknown = perfect - {"load", "pv", "prices"}
    if unknown:
        raise ValueError(f"perfect_forecasts: unknown {sorted(unknown)} (load, pv, prices)")
    if not perfect:
        return None

    def replace(forecasts: Forecasts) -> Forecasts:
        from gridctl.backtest.oracle import perfect_forecasts

        if recording.step != forecasts.step:
            raise ValueError("perfect_forecasts needs plans on the data's own step")
        known = perfect_forecasts(site, recording, plant, position, forecasts.n_steps)
        changes: dict[str, object] = {}
        if "load" in perfect:
            changes["base_load_kw"] = known.base_load_kw
        if "pv" in perfect:
            changes["pv_kw"] = {**forecasts.pv_kw, **known.pv_kw}
        if "prices" in perfect:
            changes.update(import_price_eur_per_kwh=known.import_price_eur_per_kwh,
                           export_price_eur_per_kwh=known.export_price_eur_per_kwh,
                           carbon_kg_per_kwh=known.carbon_kg_per_kwh)
        return dataclasses.replace(forecasts, **changes)  # type: ignore[arg-type]

    return replace


def _warm_up(forecaster: SignalForecaster, plant: Plant, site: m.Site, recording: Recording, first: int,
             days: float) -> int:
    """Teach the forecaster the days before the start, as the service learns from its stored history: the
    recorded load and PV, with the flexible assets idle (their measured power was taken out of the load)."""
    step = recording.step
    count = min(first, int(timedelta(days=days) / step))
    rows = [(recording.start + step * position + step / 2, plant.idle(position).get)
            for position in range(first - count, first)]
    if count and plant.grid_point:
        plant.grid_kw = from_unit(site, plant.grid_point, plant.idle(first - 1)[plant.grid_point])
    return forecaster.warm_up(site, rows)


def _trace(rows: list[dict[str, float]], recording: Recording, first: int, last: int) -> pd.DataFrame:
    index = recording.frame.index[first:last]
    frame = pd.DataFrame(rows, index=index)
    frame.index.name = "time"
    return frame.astype(float)


def finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else value
