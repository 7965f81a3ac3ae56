"""What the future really holds in a simulation: the exogenous inputs, recorded by a physics pre-pass.

Weather, occupancy, EV sessions, households' hot water and the loads gridctl does not schedule do not
depend on the controller, so one run of the physics alone gives them exactly. The `oracle` controller plans with
this trace (perfect foresight); the KPIs read comfort bands and prices at the same instants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gridctl.config.models import Site
from gridctl.forecast.forecasts import EvSessionForecast
from sim.core import SimClock
from sim.physics.components import (
    BatteryComponent,
    ChargerComponent,
    DeferrableComponent,
    DhwTankComponent,
    LightingZoneComponent,
    PoolComponent,
    PublicLightingComponent,
    PvComponent,
    ThermalZoneComponent,
)
from sim.physics.district import DistrictPhysics
from sim.site import build_devices

SCHEDULED = (BatteryComponent, ChargerComponent, PoolComponent, ThermalZoneComponent, LightingZoneComponent,
             PublicLightingComponent, PvComponent, DeferrableComponent, DhwTankComponent)


@dataclass
class ExogenousTrace:
    start: datetime
    step: timedelta
    base_load_kw: list[float] = field(default_factory=list)
    outdoor_temperature_c: list[float] = field(default_factory=list)
    irradiance_w_m2: list[float] = field(default_factory=list)
    dark: list[bool] = field(default_factory=list)
    pv_kw: dict[str, list[float]] = field(default_factory=dict)
    daylight_lux: dict[str, list[float]] = field(default_factory=dict)
    occupied: dict[str, list[bool]] = field(default_factory=dict)
    sessions: list[EvSessionForecast] = field(default_factory=list)
    # Other exogenous rates of an asset (a household's hot water): asset id -> name -> series.
    series: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def index(self, moment: datetime) -> int:
        return int((moment - self.start) / self.step)

    def __len__(self) -> int:
        return len(self.base_load_kw)


def record_trace(site: Site, seed: int, start: datetime, end: datetime, step: timedelta) -> ExogenousTrace:
    """Run the physics alone from `start` to `end` and keep, per step, what no controller changes."""
    clock = SimClock(start)
    physics = DistrictPhysics(site, build_devices(site, clock), start, seed=seed, max_step=step)
    trace = ExogenousTrace(start, step)
    trace.pv_kw = {k: [] for k in physics.pv}
    trace.daylight_lux = {k: [] for k in physics.lighting}
    trace.occupied = {k: [] for k in (*physics.lighting, *physics.zones)}
    moment = start
    while moment < end:
        physics.step(moment + step)
        middle = moment + step / 2
        weather = physics.weather.sample(middle)
        trace.base_load_kw.append(sum(c.grid_power_kw for c in physics.components if not isinstance(c, SCHEDULED)))
        trace.outdoor_temperature_c.append(weather.temperature_c)
        trace.irradiance_w_m2.append(weather.ghi_w_per_m2)
        trace.dark.append(weather.dark)
        for key, component in physics.pv.items():
            trace.pv_kw[key].append(component.model.available_power_kw)
        for key, component in physics.lighting.items():
            trace.daylight_lux[key].append(component.model.daylight_factor * weather.outdoor_illuminance_lx)
            trace.occupied[key].append(component.occupancy.present(middle))
        for key, zone in physics.zones.items():
            trace.occupied[key].append(zone.occupancy.present(middle))
        for key, rates in physics.exogenous(moment, moment + step).items():
            for name, rate in rates.items():
                trace.series.setdefault(key, {}).setdefault(name, []).append(rate)
        moment += step
    for charger_id, component in physics.chargers.items():
        schedule = component.model.schedule
        if schedule is None:
            continue
        seen = set()
        day = start - timedelta(days=1)
        while day < end + timedelta(days=1):
            for session in schedule.around(day):
                if session.arrival in seen or session.departure <= start or session.arrival >= end:
                    continue
                seen.add(session.arrival)
                trace.sessions.append(EvSessionForecast(charger_id, session.arrival, session.departure,
                                                        session.energy_kwh))
            day += timedelta(days=1)
    return trace


def measured_history(site: Site, seed: int, start: datetime, end: datetime, step: timedelta,
                     instruments: bool = True) -> Iterator[tuple[datetime, Callable[[str], float | None]]]:
    """What the site's devices showed every `step` from `start` to `end`, the physics running alone:
    the history a service that had been running before `start` would hold. Readings come through the
    same instruments as live ones, and a device whose communication was down left a gap (None)."""
    clock = SimClock(start)
    devices = build_devices(site, clock)
    physics = DistrictPhysics(site, devices, start, seed=seed, max_step=step, instruments=instruments)
    moment = start
    while moment < end:
        moment += step
        clock.advance(step)
        physics.step(moment)
        values = {f"{device_id}/{point_id}": float(value) for device_id, device in devices.items()
                  if not physics.outages.down(device_id, moment)
                  for point_id, value in device.values.items() if isinstance(value, int | float)}
        yield moment, values.get
