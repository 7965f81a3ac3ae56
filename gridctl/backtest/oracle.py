"""The oracle: the period planned knowing everything that was recorded, then replayed like the others.

By default it is one problem over the whole period: the recorded load, PV output, prices, carbon and
every car's stay, with the optimiser's model of the assets, which is the plant's own (same limits,
efficiencies, standing losses, state-of-charge band). Every controller's replay is a feasible schedule
of that problem, so its optimum (less the solver's proven gap) is a lower bound of the policy's objective
evaluated on any replay: `objective_eur` of the KPIs. With `oracle_block_days` the period is planned in
blocks that overlap, each from the state the previous one left: perfect foresight over a block, but
no longer a bound (it cannot see past the block), and it says so.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import optimizer as opt
from gridctl.backtest.plant import Plant
from gridctl.backtest.recording import LOAD, PRICE, Recording
from gridctl.backtest.replay import (
    BacktestSettings,
    Progress,
    Replay,
    _Commands,
    _trace,
    policy_for,
    truth,
)
from gridctl.config import models as m
from gridctl.forecast.forecasts import EvSessionForecast, Forecasts
from gridctl.forecast.sun import dark_by_sun, solar
from gridctl.runtime import PlannedSchedule
from gridctl.service import planner
from gridctl.service.problem import build_problem


def perfect_forecasts(site: m.Site, recording: Recording, plant: Plant, first: int, count: int) -> Forecasts:
    """What was recorded over rows first..first+count-1, as forecasts."""
    step = recording.step
    start = recording.start + step * first
    last = min(first + count, len(recording.frame))
    pad = first + count - last

    def series(name: str) -> list[float]:
        values = [float(v) for v in recording.values(name, first, last)]
        return values + [values[-1]] * pad

    signals = truth(site, recording, first, last)
    mids = [start + step * k + step / 2 for k in range(count)]
    _ghi, elevation = solar(site, mids)
    end = start + step * count
    delivered = {stay.session.arrival: stay.delivered_kwh for charger in plant.chargers() for stay in charger.stays}
    sessions = [EvSessionForecast(s.charger_id, s.arrival, s.departure,
                                  max(s.energy_kwh - delivered.get(s.arrival, 0.0), 0.0))
                for s in recording.sessions if s.departure > start and s.arrival < end]
    return Forecasts(
        start=start, step=step, n_steps=count, base_load_kw=series(LOAD),
        outdoor_temperature_c=[15.0] * count, irradiance_w_m2=[0.0] * count,
        import_price_eur_per_kwh=[float(v) for v in signals[PRICE]] + [float(signals[PRICE][-1])] * pad,
        export_price_eur_per_kwh=[float(v) for v in signals["export_price_per_kwh"]] +
        [float(signals["export_price_per_kwh"][-1])] * pad,
        carbon_kg_per_kwh=[float(v) for v in signals["carbon_kg_per_kwh"]] +
        [float(signals["carbon_kg_per_kwh"][-1])] * pad,
        pv_kw={name: series(column) for name, column in plant.recorded().items()},
        dark=[e < -3.0 for e in elevation], ev_sessions=sessions)


async def replay_oracle(site: m.Site, recording: Recording, settings: BacktestSettings,
                        progress: Progress | None = None) -> Replay:
    began, began_cpu = time.perf_counter(), time.process_time()
    step = recording.step
    first, last = recording.position(settings.start), recording.position(settings.end)
    plant = Plant(site, recording, settings.initial_soc_pct)
    commands = _Commands(site, plant)
    policy = policy_for(site, recording, settings)
    is_dark = dark_by_sun(site)
    whole = settings.oracle_block_days is None
    block = last - first if whole else max(1, int(timedelta(days=settings.oracle_block_days) / step))
    overlap = 0 if whole else int(timedelta(days=settings.oracle_overlap_days) / step)
    objective = lower_bound = 0.0
    gaps: list[float] = []
    rows: list[dict[str, float]] = []
    position = first
    while position < last:
        count = min(block, last - position)
        horizon = min(count + overlap, last - position)
        now = recording.start + step * position
        snapshot = plant.snapshot(now)
        forecasts = perfect_forecasts(site, recording, plant, position, horizon)
        problem = build_problem(site, policy, snapshot, forecasts, commands.memory)
        # The service's tie-breaker (sooner is better) grows with the horizon: the oracle pays true prices.
        problem = problem.model_copy(update={"site": problem.site.model_copy(
            update={"import_price_eur_per_kwh": forecasts.import_price_eur_per_kwh})})
        schedule = opt.solve(problem, settings.oracle_solver)
        if not schedule.has_solution:
            raise RuntimeError(f"the oracle's problem from {now:%Y-%m-%d %H:%M} UTC has no solution "
                               f"({schedule.status}): give it more time or solve in blocks")
        objective += schedule.objective_eur
        gap = schedule.mip_gap or 0.0
        gaps.append(gap)
        lower_bound += schedule.objective_eur * (1.0 - gap) if schedule.objective_eur >= 0 else \
            schedule.objective_eur * (1.0 + gap)
        planned = PlannedSchedule(f"oracle-{now:%Y%m%dT%H%M}", site.id, now, now + step * horizon, None, schedule)
        for k in range(count):
            moment = now + step * k
            requests = planner.plan(site, planned, plant.snapshot(moment), moment, is_dark, correct=False,
                                    policy=policy).requests
            commands.apply(requests, moment)
            flows = plant.advance(position + k, moment, step)
            rows.append({**flows.values, **{f"command:{a}": v for a, v in commands.last.items()}})
            if progress is not None:
                progress(position + k - first + 1)
        position += count
    trace = _trace(rows, recording, first, last)
    details: dict[str, object] = {
        "plan": "whole period" if whole else f"blocks of {settings.oracle_block_days:g} days "
                                             f"overlapping {settings.oracle_overlap_days:g}",
        "bound": whole,
        "objective_eur": round(objective, 4),
        "mip_gap": max(gaps) if gaps else None,
    }
    if whole:
        details["lower_bound_eur"] = round(lower_bound, 4) if math.isfinite(lower_bound) else None
    return Replay("oracle", trace, plant, time.perf_counter() - began, plans=len(gaps), oracle=details,
                  cpu_s=time.process_time() - began_cpu)

