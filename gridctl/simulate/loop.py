"""The control cycle on simulated time, against the simulated site, through the real protocol stacks.

Each step: poll every device over its protocol → ingest → forecast + optimise when due → dispatch
through the arbiter → the physics advances one step under the commands now in force → KPIs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import optimizer as opt
from drivers.base import Reading
from drivers.factory import make_driver, offset_ports
from gridctl.config import load_site
from gridctl.config import models as m
from gridctl.config.loader import site_file
from gridctl.dispatch import DispatchSettings
from gridctl.fieldbus import device_spec
from gridctl.forecast.forecaster import ForecastReport, SignalForecaster
from gridctl.forecast.identify import ThermalEstimate
from gridctl.forecast.openmeteo import OpenMeteoClient
from gridctl.forecast.sun import dark_by_sun
from gridctl.service.controller import ControllerKind, ControllerSettings, SiteController
from gridctl.simulate.kpi import KpiMeter, Kpis
from gridctl.simulate.oracle import OracleForecaster, OraclePlan, plan_whole_run
from gridctl.simulate.trace import measured_history, record_trace
from sim.core import Fault, FaultKind, SimClock
from sim.physics.nwp import NumericalForecast
from sim.physics.plant import Plant
from sim.site import SiteSimulation, free_port_offset
from sim.weather_server import WeatherServer

Controller = Literal["baseline", "gridctl", "mpc", "oracle"]
# Controllers that know the future and the true plant.
FORESIGHT = ("mpc", "oracle")
# Device points holding the device's own lease timeout (it falls back when no rewrite comes in time).
TIMEOUT_POINTS = ("communication-timeout", "watchdog-timeout")


@dataclass(frozen=True)
class SimulationOptions:
    site: Path
    controller: Controller
    days: float = 7.0
    seed: int = 0
    start: datetime = datetime(2026, 1, 12, tzinfo=UTC)
    step: timedelta = timedelta(minutes=5)
    physics_step: timedelta = timedelta(minutes=1)
    optimise_every: timedelta = timedelta(hours=1)
    # Events (a car plugging in) re-plan at once, but no more often than this.
    replan_gap: timedelta = timedelta(minutes=15)
    horizon_hours: float = 24.0
    # Days of history the service holds at the start (its forecasts learn from them), as after a
    # warm-up period; the physics of the run itself starts fresh at `start`.
    history_days: float = 14.0
    # gridctl reads a weather provider's forecasts over its API (a simulated provider on loopback whose
    # errors grow with lead time), as a deployed service would; without it, only its own measurements.
    weather_forecast: bool = True
    # Instruments that err within their class and devices that drop out now and then (sim/PLANT.md);
    # off, devices report the physics' true values and always answer.
    instruments: bool = True
    solver: opt.Settings = field(default_factory=lambda: opt.Settings(time_limit_s=10.0, mip_gap=0.01))
    # The oracle solves the whole run at once: a bigger problem, given more time and a tighter gap.
    oracle_solver: opt.Settings = field(default_factory=lambda: opt.Settings(time_limit_s=600.0, mip_gap=0.002))
    port_offset: int | None = None


@dataclass
class SimulationResult:
    site_id: str
    controller: str
    start: datetime
    end: datetime
    seed: int
    kpis: Kpis
    wall_s: float
    optimisations: int
    optimiser_failures: int
    writes: int
    # Per asset, each physical parameter as the site file documents it and as the simulated plant has it.
    plant: dict[str, Any] = field(default_factory=dict)
    # The oracle's whole-run plan: its objective and the solver's proven gap.
    oracle: dict[str, Any] | None = None
    # Per zone, the thermal model gridctl identified from its measurements and whether its plans used it,
    # beside the site file's and the plant's true values.
    identified: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site_id, "controller": self.controller, "start": self.start.isoformat(),
            "end": self.end.isoformat(), "seed": self.seed, "kpis": self.kpis.as_dict(),
            "wall_s": round(self.wall_s, 2), "optimisations": self.optimisations,
            "optimiser_failures": self.optimiser_failures, "writes": self.writes, "plant": self.plant,
            **({"identified": self.identified} if self.identified else {}),
            **({"oracle": self.oracle} if self.oracle is not None else {}),
        }


StepObserver = Callable[[datetime, SiteSimulation, SiteController], None]


async def simulate(options: SimulationOptions, on_step: StepObserver | None = None) -> SimulationResult:
    """Run one closed loop; `on_step` sees the simulation and the controller after every step."""
    wall_started = time.perf_counter()
    site = load_site(options.site)
    site_dir = site_file(options.site).parent
    offset = options.port_offset if options.port_offset is not None else free_port_offset(site)
    start = options.start.astimezone(UTC)
    end = start + timedelta(days=options.days)
    clock = SimClock(start)
    # Physics sub-steps of one control step: the models sample their inputs at each sub-step's start.
    simulation = SiteSimulation(site, clock, seed=options.seed, port_offset=offset, max_step=options.physics_step,
                                instruments=options.instruments)
    # The installer sets each device's lease timeout to three control steps.
    for device in simulation.devices.values():
        for point_id in TIMEOUT_POINTS:
            if point_id in device.points:
                device.set(point_id, 3 * options.step.total_seconds())
        if device.watchdog is not None:
            # Heartbeats come once per control step, with the lease renewals.
            device.watchdog.timeout_s = max(device.watchdog.timeout_s, 3 * options.step.total_seconds())
    drivers = {d.id: make_driver(offset_ports(device_spec(d, site_dir), offset)) for d in site.devices}
    kind = ControllerKind.BASELINE if options.controller == "baseline" else ControllerKind.GRIDCTL
    weather_server: WeatherServer | None = None
    weather: OpenMeteoClient | None = None
    if options.controller in FORESIGHT:
        # Past the run by the oracle's margin or the last plan's horizon, whichever is longer.
        trace = record_trace(site, options.seed, start, end + timedelta(hours=max(options.horizon_hours, 12.0)),
                             options.step)
        physics = simulation.physics

        def delivered(charger_id: str, arrival: datetime) -> float:
            served = physics.chargers[charger_id].model.served.get(arrival)
            return served[1] if served else 0.0

        forecaster: Any = OracleForecaster(trace, delivered, physics.plant)
    else:
        if options.controller == "gridctl" and options.weather_forecast:
            # The simulated world's weather provider: the site's own provider settings, on loopback.
            weather_server = WeatherServer(NumericalForecast(simulation.physics.weather, options.seed), clock)
            url = await weather_server.start()
            provider = site.weather or m.WeatherProvider(url=url)
            weather = OpenMeteoClient(provider.model_copy(update={"url": url}), site.location.latitude,
                                      site.location.longitude)
        forecaster = SignalForecaster(weather_service=weather)
    if isinstance(forecaster, SignalForecaster) and options.history_days > 0:
        forecaster.warm_up(site, measured_history(site, options.seed, start - timedelta(days=options.history_days),
                                                  start, options.step, options.instruments))
    from gridctl.policy import PolicyVersion, SitePolicy

    policy = PolicyVersion(site_id=site.id, version=1, policy=SitePolicy(horizon_hours=options.horizon_hours),
                           author="simulation", created_at=start)
    # Relinquishing at the end is staggered in wall time by the arbiter; simulated devices don't need it.
    # The oracle's plan is exact (it knows every arrival): it is followed as made, not corrected.
    settings = ControllerSettings(kind=kind, solver=options.solver, schedule_validity=options.optimise_every * 3,
                                  dispatch=DispatchSettings(relinquish_stagger_s=0.0),
                                  correct_between_plans=options.controller != "oracle")
    # Darkness as in `gridctl run`: the sun's elevation, and the cabinets' photocells (read by the planner).
    # The oracle and the perfect-forecast MPC plan with the plant as it really is; gridctl and the baseline
    # know only the site file.
    planned_site = simulation.physics.plant.true_site(site) if options.controller in FORESIGHT else site
    controller = SiteController(planned_site, drivers, clock, forecaster, policy=policy, settings=settings,
                                is_dark=dark_by_sun(site))
    oracle_plan: OraclePlan | None = None
    meter = KpiMeter(site, simulation.physics)
    await simulation.start(step_interval_s=3600.0)
    try:
        next_optimise = start
        last_optimise = start
        moment = start
        while moment < end:
            began = time.perf_counter()
            _outages(simulation, moment)
            await _poll(controller, drivers, clock)
            if options.controller == "oracle":
                if oracle_plan is None:
                    oracle_plan = await plan_whole_run(planned_site, forecaster, policy, controller.snapshot(),
                                                       start, end, options.oracle_solver)
                    controller.planned = oracle_plan.planned
                next_optimise = end
            replan = controller.replan_requested.is_set() and moment >= last_optimise + options.replan_gap
            if kind == ControllerKind.GRIDCTL and options.controller != "oracle" and (
                    moment >= next_optimise or replan):
                await controller.optimise()
                if weather is not None:
                    weather.report(controller.alarms, site.id, moment)
                last_optimise = moment
                if moment >= next_optimise:
                    next_optimise = moment + options.optimise_every
            if isinstance(forecaster, SignalForecaster):
                forecaster.observe(site, controller.snapshot())
            await controller.dispatch()
            await controller.renew()
            meter.kpis.controller_s += time.perf_counter() - began
            following = moment + options.step
            clock.advance(options.step)
            simulation.step(following)
            meter.step(moment, following)
            moment = following
            if on_step is not None:
                on_step(moment, simulation, controller)
        kpis = meter.finish(start, end)
    finally:
        await controller.shutdown()
        await simulation.stop()
        if weather_server is not None:
            await weather_server.stop()
    report = controller.forecast_report()
    return SimulationResult(site.id, options.controller, start, end, options.seed, kpis,
                            time.perf_counter() - wall_started, controller.stats.optimisations,
                            controller.stats.optimiser_failures, controller.stats.writes,
                            plant=simulation.physics.plant.as_dict(),
                            identified={} if report is None else identified(site, simulation.physics.plant, report),
                            oracle=None if oracle_plan is None else {
                                "objective_eur": round(oracle_plan.objective_eur, 3), "mip_gap": oracle_plan.mip_gap,
                                "lower_bound_eur": round(oracle_plan.lower_bound_eur, 3),
                                "steps": oracle_plan.steps})


def _outages(simulation: SiteSimulation, moment: datetime) -> None:
    """Devices whose communication is down now answer every request with an error, as through a gateway
    that lost them; the others are healed."""
    down = Fault(FaultKind.EXCEPTION)
    for device_id in simulation.devices:
        simulation.inject_fault(device_id, down if simulation.physics.outages.down(device_id, moment) else None)


async def _poll(controller: SiteController, drivers: dict[str, Any], clock: SimClock) -> None:
    now = clock.now()

    async def one(device_id: str) -> None:
        driver = drivers[device_id]
        readings = await driver.read()
        # The drivers stamp readings with the wall clock; in simulated time they were taken now.
        stamped: list[Reading] = [dataclasses.replace(r, ts=now) for r in readings]
        await controller.ingest(device_id, stamped, driver.health())

    await asyncio.gather(*(one(device_id) for device_id in drivers))


def identified(site: m.Site, plant: Plant, report: ForecastReport) -> dict[str, Any]:
    """Per zone: the model gridctl identified and used, each parameter beside the site file's and the plant's.

    Heat is the heat pump's electric power times the site file's COP formula, so what identification can
    find is the plant seen through that formula: resistances × (true COP / file COP), capacities, gains and
    aperture ÷ it (`true_seen_through_site_file_cop`); the time constants are the plant's own."""
    out: dict[str, Any] = {}
    areas = {asset.id: getattr(asset, "floor_area_m2", None) for asset in site.assets}
    for zone_id, estimate in report.identified.items():
        params = plant.assets.get(zone_id, {})
        if not isinstance(estimate, ThermalEstimate) or "heat_pump.carnot_efficiency" not in params:
            continue
        cop = params["heat_pump.carnot_efficiency"].true / params["heat_pump.carnot_efficiency"].documented
        found = estimate.identification
        area_kw = float(areas[zone_id] or 0.0) / 1000.0 or 1.0
        values: dict[str, float | None] = {name: getattr(found.model, name) if found else None for name in (
            "resistance_k_per_kw", "capacitance_kwh_per_k", "envelope_resistance_k_per_kw",
            "envelope_capacitance_kwh_per_k", "solar_aperture_m2")}
        values["internal_gain_occupied_w_per_m2"] = found.internal_gain_occupied_kw / area_kw if found else None
        values["internal_gain_idle_w_per_m2"] = found.internal_gain_idle_kw / area_kw if found else None
        parameters = {}
        for name, value in values.items():
            if name not in params:
                continue
            true = params[name].true
            seen = true * cop if "resistance" in name else true / cop
            parameters[name] = {"identified": None if value is None else round(value, 6),
                                "site_file": params[name].as_dict()["site_file"], "true": round(true, 6),
                                "true_seen_through_site_file_cop": round(seen, 6)}
        out[zone_id] = {
            "in_use": "identified" if estimate.identified else "site_file", "reason": estimate.reason,
            "fitted_at": estimate.fitted_at.isoformat() if estimate.fitted_at else None, "parameters": parameters,
            "held_out_day_ahead_rmse_k": None if found is None else {
                "identified": round(found.held_out.multi_step_rmse_k, 4),
                "site_file": round(found.site_file_held_out.multi_step_rmse_k, 4)}}
    return out
