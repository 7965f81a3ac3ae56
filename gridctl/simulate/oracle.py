"""Perfect foresight: the oracle, and the forecasts a perfect-forecast MPC plans with.

`OracleForecaster` reads the future from the simulation's exogenous trace (weather, loads, occupancy,
every EV session with its true departure and energy, households' hot water) and gives each zone its true
internal gains.
`plan_whole_run` solves one problem over the whole simulated horizon with the plant's true parameters,
which the controller then follows with the same dispatch rules as gridctl's plans (without corrections
between plans: there are none). The `mpc` controller is gridctl's own receding-horizon loop fed the
same forecasts and the true plant: it re-plans, corrects between plans and reacts to what happens.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import optimizer as opt
from gridctl.config import models as m
from gridctl.forecast.carbon import carbon_intensity
from gridctl.forecast.forecasts import EvSessionForecast, Forecasts
from gridctl.forecast.prices import tariff_prices
from gridctl.policy import PolicyVersion
from gridctl.runtime import PlannedSchedule
from gridctl.service.problem import build_problem
from gridctl.service.snapshot import Snapshot
from gridctl.simulate.trace import ExogenousTrace
from sim.physics.plant import Plant


class OracleForecaster:
    """The future as it will be (the exogenous trace), and each zone's true internal gains."""

    def __init__(self, trace: ExogenousTrace, delivered_kwh: Callable[[str, datetime], float], plant: Plant,
                 tempo_colours: dict[str, str] | None = None) -> None:
        self.trace = trace
        self.plant = plant
        # Energy already delivered to the session of a charger that arrived at a given instant.
        self.delivered_kwh = delivered_kwh
        self.tempo_colours = tempo_colours or {}

    async def forecast(self, site: m.Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts:
        trace = self.trace
        ratio = max(1, round(step / trace.step))

        def window(k: int) -> range:
            first = trace.index(start + step * k)
            return range(max(first, 0), min(first + ratio, len(trace)))

        def mean(series: list[float], k: int) -> float:
            span = window(k)
            return sum(series[i] for i in span) / len(span) if len(span) else (series[-1] if series else 0.0)

        def majority(series: list[bool], k: int) -> bool:
            span = window(k)
            return sum(series[i] for i in span) * 2 >= len(span) if len(span) else False

        steps = range(n_steps)
        mids = [start + step * k + step / 2 for k in steps]
        end = start + step * n_steps
        sessions = []
        for session in trace.sessions:
            if session.departure <= start or session.arrival >= end:
                continue
            delivered = self.delivered_kwh(session.charger_id, session.arrival) if session.arrival < start else 0.0
            sessions.append(EvSessionForecast(session.charger_id, session.arrival, session.departure,
                                              max(session.energy_needed_kwh - delivered, 0.0)))
        def share(series: list[bool], k: int) -> float:
            span = window(k)
            return sum(series[i] for i in span) / len(span) if len(span) else float(bool(series and series[-1]))

        # Each zone's internal gains as the plant has them: its true gain densities times the share of each
        # step someone is really there.
        gains: dict[str, dict[str, list[float]]] = {}
        areas = {asset.id: getattr(asset, "floor_area_m2", None) for asset in site.assets}
        for zone_id, occupancy in trace.occupied.items():
            params = self.plant.assets.get(zone_id, {})
            area = areas.get(zone_id)
            if "internal_gain_occupied_w_per_m2" not in params or area is None:
                continue
            occupied_w = params["internal_gain_occupied_w_per_m2"].true
            idle_w = params["internal_gain_idle_w_per_m2"].true
            presence = [share(occupancy, k) for k in steps]
            gains[zone_id] = {"internal_gain_kw": [(p * occupied_w + (1.0 - p) * idle_w) * area / 1000.0
                                                   for p in presence]}
        return Forecasts(
            start=start, step=step, n_steps=n_steps,
            base_load_kw=[mean(trace.base_load_kw, k) for k in steps],
            outdoor_temperature_c=[mean(trace.outdoor_temperature_c, k) for k in steps],
            irradiance_w_m2=[mean(trace.irradiance_w_m2, k) for k in steps],
            import_price_eur_per_kwh=tariff_prices(site.tariff, mids, site.tz, self.tempo_colours),
            export_price_eur_per_kwh=[site.tariff.export_price_eur_per_kwh] * n_steps,
            carbon_kg_per_kwh=carbon_intensity(mids, site.tz),
            pv_kw={a: [mean(s, k) for k in steps] for a, s in trace.pv_kw.items()},
            daylight_lux={a: [mean(s, k) for k in steps] for a, s in trace.daylight_lux.items()},
            occupied={a: [majority(s, k) for k in steps] for a, s in trace.occupied.items()},
            dark=[majority(trace.dark, k) for k in steps],
            ev_sessions=sessions,
            series={**{a: {name: [mean(s, k) for k in steps] for name, s in by_name.items()}
                       for a, by_name in trace.series.items()}, **gains},
        )


@dataclass(frozen=True)
class OraclePlan:
    """The oracle's one plan for the whole run, and what its solver proved about it."""

    planned: PlannedSchedule
    objective_eur: float
    # Relative MIP gap of the solve: no schedule of the model can cost less than objective × (1 − gap).
    mip_gap: float | None
    steps: int

    @property
    def lower_bound_eur(self) -> float:
        return self.objective_eur * (1.0 - (self.mip_gap or 0.0))


async def plan_whole_run(true_site: m.Site, forecaster: OracleForecaster, policy: PolicyVersion,
                         snapshot: Snapshot, start: datetime, end: datetime, settings: opt.Settings,
                         margin: timedelta = timedelta(hours=12)) -> OraclePlan:
    """One schedule from `start` to `end` (and a margin, so the end is not a cliff), made knowing the future
    (`forecaster` reads the exogenous trace, with the true internal gains) and the plant as it really is:
    its true RC, heat-pump and battery parameters (`true_site`)."""
    step = timedelta(minutes=policy.policy.step_minutes)
    n_steps = math.ceil((end + margin - start) / step)
    forecasts = await forecaster.forecast(true_site, snapshot, start, n_steps, step)
    problem = build_problem(true_site, policy.policy, snapshot, forecasts)
    schedule = await asyncio.to_thread(opt.solve, problem, settings)
    if not schedule.has_solution:
        raise RuntimeError(f"the oracle's whole-run problem has no solution ({schedule.status})")
    planned = PlannedSchedule(schedule_id=f"oracle-{start:%Y%m%dT%H%M}", site_id=true_site.id, created_at=start,
                              valid_until=end + margin, policy_version=policy.version, schedule=schedule)
    return OraclePlan(planned, schedule.objective_eur, schedule.mip_gap, n_steps)
