"""The physics of each kind of equipment, wired to the points of the simulated devices that expose it.

A component reads its commanded points (setpoints written over the wire), advances its model over
one step, and writes its measurements back. `grid_power_kw` is what it adds to the site's import
(loads positive, PV negative, battery positive when charging).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from drivers.base import Value
from sim.core import SimDevice
from sim.physics import noise
from sim.physics.battery import Battery
from sim.physics.energy import EnergyCounter, Lease, split_at
from sim.physics.ev import Charger
from sim.physics.hot_water import (
    DRAW_SERIES,
    HotWaterHousehold,
    StratifiedTank,
    TankHeater,
    Thermostat,
    cold_water_temperature_c,
    litres_from_tank,
)
from sim.physics.lighting import LightingZone, PublicLightingCircuit, occupied
from sim.physics.loads import HeatSubstation, Household
from sim.physics.points import PointRef
from sim.physics.pv import PvArray
from sim.physics.schedule import Window, in_any
from sim.physics.thermal import HeatPump, RcZone
from sim.physics.weather import WeatherSample

NOMINAL_VOLTAGE_V = 230.0


@dataclass(frozen=True, slots=True)
class Tick:
    """One step of the simulation: inputs are held at their value at `start` until `end`."""

    start: datetime
    end: datetime
    weather: WeatherSample
    tz: ZoneInfo

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def local(self) -> datetime:
        return self.start.astimezone(self.tz)


def _set(ref: PointRef | None, value: float | bool) -> None:
    if ref is not None:
        ref.set(value)


class Component:
    """Base of every component: no grid contribution unless it says so."""

    grid_power_kw: float = 0.0
    # Loads count in a building's consumption; generation and storage do not.
    is_load: bool = True

    def advance(self, tick: Tick) -> None:
        raise NotImplementedError

    def exogenous(self, start: datetime, end: datetime) -> dict[str, float]:
        """What no controller changes over [start, end), as rates by name (the oracle's trace)."""
        return {}


class Occupancy:
    """Seeded presence for one sensor, following a schedule of windows; the same key gives the same answer,
    so two assets sharing one occupancy sensor agree."""

    def __init__(self, seed: int, key: str, windows: Sequence[Window], tz: ZoneInfo) -> None:
        self.seed, self.key, self.windows, self.tz = seed, key, list(windows), tz

    def scheduled(self, ts: datetime) -> bool:
        return in_any(self.windows, ts, self.tz)

    def present(self, ts: datetime) -> bool:
        return occupied(self.seed, self.key, ts, self.scheduled(ts))


# --------------------------------------------------------------------------- battery


class BatteryComponent(Component):
    """Follows the power setpoint while its lease (the watchdog time) runs; then falls back to 0 kW."""

    is_load = False

    def __init__(self, model: Battery, *, power: PointRef, setpoint: PointRef, soc: PointRef,
                 charged: PointRef | None = None, discharged: PointRef | None = None,
                 watchdog: PointRef | None = None, remote: PointRef | None = None, state: PointRef | None = None,
                 cell_temperature: PointRef | None = None, watchdog_default_s: float = 60.0) -> None:
        self.model = model
        self.power, self.setpoint, self.soc = power, setpoint, soc
        self.charged, self.discharged, self.watchdog, self.remote = charged, discharged, watchdog, remote
        self.state, self.cell_temperature = state, cell_temperature
        self.lease = Lease(watchdog_default_s)
        if watchdog is not None:
            watchdog.local_default(watchdog_default_s)
        if remote is not None:
            remote.local_default(True)
        setpoint.device.on_write(self._on_write)

    def _on_write(self, device: SimDevice, point_id: str, value: Value | None, priority: int | None) -> None:
        if point_id == self.setpoint.point_id:
            self.lease.renew(device.clock.now())

    def advance(self, tick: Tick) -> None:
        if self.watchdog is not None:
            self.lease.timeout_s = max(self.watchdog.read(), 1.0)
        remote = self.remote.read_bool() if self.remote is not None else True
        before = self.model.charged.energy_kwh - self.model.discharged.energy_kwh
        for start, end in split_at(tick.start, tick.end, [self.lease.expires_at]):
            held = remote and self.lease.active(start)
            if not held and self.lease.renewed_at is not None and self.setpoint.read() != 0.0:
                # The watchdog expired: the setpoint falls back to standby, visibly.
                self.setpoint.set(0.0)
            self.model.advance((end - start).total_seconds(), self.setpoint.read() if held else 0.0)
        net_kwh = self.model.charged.energy_kwh - self.model.discharged.energy_kwh - before
        self.grid_power_kw = net_kwh * 3600.0 / tick.duration_s if tick.duration_s > 0 else self.model.power_kw
        self.power.set(self.grid_power_kw)
        self.soc.set(self.model.soc_pct)
        _set(self.charged, self.model.charged.energy_kwh)
        _set(self.discharged, self.model.discharged.energy_kwh)
        _set(self.state, 1 if self.grid_power_kw > 1e-6 else 2 if self.grid_power_kw < -1e-6 else 0)
        _set(self.cell_temperature, 22.0 + 6.0 * abs(self.grid_power_kw) / self.model.max_charge_power_kw)


# --------------------------------------------------------------------------- EV charging


class ChargerComponent(Component):
    """A charging point: the current limit is a lease; after the communication timeout the charger
    applies its fallback current."""

    def __init__(self, model: Charger, *, current_limit: PointRef, power: PointRef, plug_state: PointRef,
                 session_energy: PointRef | None = None, energy: PointRef | None = None,
                 fallback_current: PointRef | None = None, communication_timeout: PointRef | None = None,
                 phase_currents: Sequence[PointRef] = (), fallback_default_a: float = 6.0,
                 timeout_default_s: float = 60.0, time_to_departure: PointRef | None = None,
                 energy_request: PointRef | None = None) -> None:
        self.model = model
        self.time_to_departure, self.energy_request = time_to_departure, energy_request
        self.current_limit, self.power, self.plug_state = current_limit, power, plug_state
        self.session_energy, self.energy = session_energy, energy
        self.fallback_current, self.communication_timeout = fallback_current, communication_timeout
        self.phase_currents = list(phase_currents)
        self.fallback_default_a = fallback_default_a
        self.lease = Lease(timeout_default_s)
        # Uncontrolled, a charger offers its full current.
        current_limit.local_default(current_limit.clamp(model.max_current_a))
        if fallback_current is not None:
            fallback_current.local_default(fallback_default_a)
        if communication_timeout is not None:
            communication_timeout.local_default(timeout_default_s)
        current_limit.device.on_write(self._on_write)

    def _on_write(self, device: SimDevice, point_id: str, value: Value | None, priority: int | None) -> None:
        if point_id == self.current_limit.point_id:
            self.lease.renew(device.clock.now())

    def _fallback_a(self) -> float:
        return self.fallback_current.read() if self.fallback_current is not None else self.fallback_default_a

    def advance(self, tick: Tick) -> None:
        if self.communication_timeout is not None:
            self.lease.timeout_s = max(self.communication_timeout.read(), 1.0)
        before = self.model.energy.energy_kwh
        for start, end in split_at(tick.start, tick.end, [self.lease.expires_at]):
            if self.lease.renewed_at is not None and not self.lease.active(start):
                fallback = self._fallback_a()
                if self.current_limit.read() != fallback:
                    self.current_limit.set(fallback)
            self.model.advance(start, end, self.current_limit.read())
        seconds = tick.duration_s
        self.grid_power_kw = (self.model.energy.energy_kwh - before) * 3600.0 / seconds if seconds > 0 else 0.0
        self.power.set(self.grid_power_kw)
        self.plug_state.set(int(self.model.state))
        _set(self.session_energy, self.model.session_energy_kwh)
        _set(self.energy, self.model.energy.energy_kwh)
        # What the car or driver declared at plug-in; 0 when nothing was declared.
        session = self.model.current(tick.end)
        departure = session.declared_departure if session is not None else None
        _set(self.time_to_departure, max((departure - tick.end).total_seconds(), 0.0) if departure else 0.0)
        _set(self.energy_request, (session.declared_energy_kwh or 0.0) if session is not None else 0.0)
        phase_current = self.grid_power_kw * 1000.0 / (self.model.phases * self.model.voltage_v)
        for index, ref in enumerate(self.phase_currents):
            ref.set(phase_current if index < self.model.phases else 0.0)


class PoolComponent(Component):
    """The summed power of a charger pool, when the pool has its own meter point."""

    is_load = False  # its chargers already count

    def __init__(self, chargers: Sequence[ChargerComponent], power: PointRef) -> None:
        self.chargers, self.power = list(chargers), power

    def advance(self, tick: Tick) -> None:
        self.power.set(sum(c.grid_power_kw for c in self.chargers))


# --------------------------------------------------------------------------- thermal zones


@dataclass
class ZonePoints:
    temperature: PointRef
    setpoint: PointRef
    heat_pump_power: PointRef
    heat_pump_energy: PointRef | None = None
    occupancy: PointRef | None = None
    mode: PointRef | None = None
    # On the heat pump's device.
    thermal_power: PointRef | None = None
    cop: PointRef | None = None
    water_supply_temperature: PointRef | None = None
    water_supply_setpoint: PointRef | None = None
    enable: PointRef | None = None
    status: PointRef | None = None
    compressor_running: PointRef | None = None
    # On the air handler's device.
    air_supply_temperature: PointRef | None = None
    airflow: PointRef | None = None
    heating_valve: PointRef | None = None
    fan_speed: PointRef | None = None
    fan_status: PointRef | None = None


@dataclass
class VavPoints:
    zone_temperature: PointRef
    setpoint: PointRef | None = None
    damper: PointRef | None = None
    airflow: PointRef | None = None
    co2: PointRef | None = None
    occupancy: PointRef | None = None


class VavBox:
    """A VAV zone served by an air handler: its temperature sits around the air handler's zone,
    nudged by its own setpoint."""

    def __init__(self, points: VavPoints, occupancy: Occupancy, seed: int, nominal_airflow_m3_per_h: float = 900.0):
        self.points = points
        self.occupancy = occupancy
        self.offset_k = 0.8 * (noise.uniform(seed, "vav-offset", points.zone_temperature.address) - 0.5) * 2.0
        self.nominal_airflow_m3_per_h = nominal_airflow_m3_per_h
        self.temperature_c = 20.0

    def advance(self, tick: Tick, zone_c: float, zone_setpoint_c: float) -> None:
        p = self.points
        if p.setpoint is not None:
            p.setpoint.local_default(p.setpoint.clamp(zone_setpoint_c))
        own_setpoint = p.setpoint.read() if p.setpoint is not None else zone_setpoint_c
        present = self.occupancy.present(tick.start)
        nudge = max(min(0.4 * (own_setpoint - zone_setpoint_c), 1.5), -1.5)
        self.temperature_c = zone_c + self.offset_k + nudge
        damper = max(min(40.0 + 40.0 * (own_setpoint - self.temperature_c), 100.0), 15.0) if present else 15.0
        p.zone_temperature.set(self.temperature_c)
        _set(p.damper, damper)
        _set(p.airflow, damper / 100.0 * self.nominal_airflow_m3_per_h)
        slot = int(tick.start.timestamp() // 900)
        co2 = 430.0 + (380.0 + 120.0 * noise.uniform(0, "co2", p.zone_temperature.address, slot) if present else 15.0)
        _set(p.co2, co2)
        _set(p.occupancy, present)


class ThermalZoneComponent(Component):
    """A zone heated by a heat pump whose local controller tracks the zone setpoint."""

    def __init__(self, zone: RcZone, heat_pump: HeatPump, points: ZonePoints, occupancy: Occupancy, *,
                 floor_area_m2: float, solar_aperture_m2: float, occupied_setpoint_c: float,
                 unoccupied_setpoint_c: float, free_cooling_above_c: float = 23.0,
                 vavs: Sequence[VavBox] = (), internal_gain_w_per_m2: tuple[float, float] = (3.0, 0.5)) -> None:
        self.zone, self.heat_pump, self.points, self.occupancy = zone, heat_pump, points, occupancy
        # People, lighting and equipment: (someone present, nobody there).
        self.internal_gain_w_per_m2 = internal_gain_w_per_m2
        self.floor_area_m2, self.solar_aperture_m2 = floor_area_m2, solar_aperture_m2
        self.occupied_setpoint_c, self.unoccupied_setpoint_c = occupied_setpoint_c, unoccupied_setpoint_c
        self.vavs = list(vavs)
        self.free_cooling_above_c = free_cooling_above_c
        self.energy = EnergyCounter()
        self.nominal_airflow_m3_per_h = 3.0 * floor_area_m2
        self.free_cooling = False
        if points.enable is not None:
            points.enable.local_default(True)
        if points.water_supply_setpoint is not None:
            points.water_supply_setpoint.local_default(heat_pump.supply_temperature_c)

    def _local_setpoint_c(self, tick: Tick) -> float:
        p = self.points
        occupied_mode = self.occupancy.scheduled(tick.start)
        if p.mode is not None:
            p.mode.local_default(2 if occupied_mode else 1)
            by_mode = {2: self.occupied_setpoint_c, 3: self.occupied_setpoint_c - 2.0}
            return by_mode.get(round(p.mode.read()), self.unoccupied_setpoint_c)
        return self.occupied_setpoint_c if occupied_mode else self.unoccupied_setpoint_c

    def advance(self, tick: Tick) -> None:
        p = self.points
        seconds = tick.duration_s
        outdoor_c = tick.weather.temperature_c
        present = self.occupancy.present(tick.start)
        p.setpoint.local_default(p.setpoint.clamp(self._local_setpoint_c(tick)))
        setpoint_c = p.setpoint.read()
        if p.water_supply_setpoint is not None:
            self.heat_pump.supply_temperature_c = p.water_supply_setpoint.read()
        enabled = p.enable.read_bool() if p.enable is not None else True
        # The local controller sees the zone through its own sensor, as gridctl does.
        sensed_c = p.temperature.sensed(self.zone.air_temperature_c)
        heat_kw = self.heat_pump.control(seconds, setpoint_c, sensed_c, outdoor_c, enabled)
        occupied_w, idle_w = self.internal_gain_w_per_m2
        internal_kw = (occupied_w if present else idle_w) * self.floor_area_m2 / 1000.0
        solar_kw = self.solar_aperture_m2 * tick.weather.ghi_w_per_m2 / 1000.0
        zone_before_c = self.zone.air_temperature_c
        # An air handler bypasses its heat recovery when the zone runs warm (2 K over its setpoint and near the
        # top of the comfort band) and outdoor air is cooler (free cooling): full fresh-air flow, 0.34 Wh/(m³·K).
        threshold_c = max(setpoint_c + 2.0, self.free_cooling_above_c)
        self.free_cooling = (p.airflow is not None and zone_before_c > threshold_c
                             and outdoor_c < zone_before_c - 1.0)
        cooling_kw = (0.34e-3 * self.nominal_airflow_m3_per_h * (zone_before_c - outdoor_c)
                      if self.free_cooling else 0.0)
        self.zone.advance(seconds, outdoor_c, heat_kw + internal_kw + solar_kw - cooling_kw)
        self.grid_power_kw = self.heat_pump.electric_power_kw
        self.energy.add(self.grid_power_kw, seconds)
        zone_c = self.zone.air_temperature_c
        load = self.heat_pump.electric_power_kw / self.heat_pump.max_electric_power_kw
        running = self.heat_pump.electric_power_kw > 1e-6
        p.temperature.set(zone_c)
        p.heat_pump_power.set(self.grid_power_kw)
        _set(p.heat_pump_energy, self.energy.energy_kwh)
        _set(p.occupancy, present)
        _set(p.thermal_power, heat_kw)
        _set(p.cop, self.heat_pump.cop if running else 0.0)
        _set(p.water_supply_temperature, self.heat_pump.supply_temperature_c if running else zone_c + 3.0)
        _set(p.status, 1 if running else 0)
        _set(p.compressor_running, running)
        _set(p.air_supply_temperature, outdoor_c if self.free_cooling else zone_c + (12.0 * load if running else -1.0))
        _set(p.heating_valve, 100.0 * load)
        if p.fan_speed is not None:
            p.fan_speed.local_default(70.0 if self.occupancy.scheduled(tick.start) else 30.0)
            fan_pct = p.fan_speed.read()
        else:
            fan_pct = 50.0
        _set(p.airflow, (100.0 if self.free_cooling else fan_pct) / 100.0 * self.nominal_airflow_m3_per_h)
        _set(p.fan_status, fan_pct > 0)
        for vav in self.vavs:
            vav.advance(tick, zone_c, setpoint_c)


# --------------------------------------------------------------------------- lighting


class LightingZoneComponent(Component):
    def __init__(self, model: LightingZone, occupancy: Occupancy, *, dimming: PointRef, power: PointRef,
                 occupancy_point: PointRef | None = None, illuminance: PointRef | None = None,
                 energy: PointRef | None = None) -> None:
        self.model, self.occupancy = model, occupancy
        self.dimming, self.power, self.occupancy_point = dimming, power, occupancy_point
        self.illuminance, self.energy = illuminance, energy

    def advance(self, tick: Tick) -> None:
        present = self.occupancy.present(tick.start)
        # The controller's own occupancy logic: full light when someone is there, off otherwise.
        self.dimming.local_default(100.0 if present else 0.0)
        self.grid_power_kw = self.model.advance(tick.duration_s, self.dimming.read(),
                                                tick.weather.outdoor_illuminance_lx)
        self.power.set(self.grid_power_kw)
        _set(self.illuminance, self.model.illuminance_lx)
        _set(self.energy, self.model.energy.energy_kwh)
        _set(self.occupancy_point, present)


class PublicLightingComponent(Component):
    def __init__(self, model: PublicLightingCircuit, *, dimming: PointRef, power: PointRef,
                 energy: PointRef | None = None, photocell: PointRef | None = None) -> None:
        self.model, self.dimming, self.power, self.energy, self.photocell = model, dimming, power, energy, photocell
        dimming.local_default(100.0)

    def advance(self, tick: Tick) -> None:
        dark = tick.weather.dark
        self.grid_power_kw = self.model.advance(tick.duration_s, self.dimming.read(), dark)
        self.power.set(self.grid_power_kw)
        _set(self.energy, self.model.energy.energy_kwh)
        _set(self.photocell, dark)


# --------------------------------------------------------------------------- PV


class PvComponent(Component):
    is_load = False

    def __init__(self, model: PvArray, *, tilt_deg: float, azimuth_deg: float, power: PointRef,
                 energy: PointRef | None = None, curtailment_limit: PointRef | None = None,
                 irradiance: PointRef | None = None, dc_power: PointRef | None = None,
                 status: PointRef | None = None, cabinet_temperature: PointRef | None = None) -> None:
        self.model, self.tilt_deg, self.azimuth_deg = model, tilt_deg, azimuth_deg
        self.power, self.energy, self.curtailment_limit, self.irradiance = power, energy, curtailment_limit, irradiance
        self.dc_power, self.status, self.cabinet_temperature = dc_power, status, cabinet_temperature
        if curtailment_limit is not None:
            curtailment_limit.local_default(100.0)

    def advance(self, tick: Tick) -> None:
        limit = self.curtailment_limit.read() if self.curtailment_limit is not None else 100.0
        poa = tick.weather.plane_of_array_w_per_m2(self.tilt_deg, self.azimuth_deg)
        produced = self.model.advance(tick.duration_s, poa, limit)
        self.grid_power_kw = -produced
        self.power.set(produced)
        _set(self.energy, self.model.energy.energy_kwh)
        _set(self.irradiance, tick.weather.ghi_w_per_m2)
        _set(self.dc_power, self.model.dc_power_kw)
        if self.status is not None:
            self.status.set(1 if poa < 5.0 else 5 if self.model.throttled else 4)
        _set(self.cabinet_temperature,
             tick.weather.temperature_c + 5.0 + 15.0 * produced / self.model.inverter_max_power_kw)


# --------------------------------------------------------------------------- deferrable appliances


class HotWaterTank:
    """A domestic hot-water tank: a heater, standing losses, draws while the building is occupied; its own
    thermostat keeps it above 45 °C and cuts at 65 °C."""

    def __init__(self, temperature: PointRef, occupancy: Occupancy, capacity_kwh_per_k: float = 1.2) -> None:
        self.temperature_ref, self.occupancy, self.capacity_kwh_per_k = temperature, occupancy, capacity_kwh_per_k
        self.temperature_c = 55.0
        self.thermostat_on = False

    def power_kw(self, running: bool, rated_kw: float) -> float:
        if self.temperature_c >= 65.0:
            self.thermostat_on = False
            return 0.0
        if running:
            return rated_kw
        if self.temperature_c < 45.0:
            self.thermostat_on = True
        elif self.temperature_c > 50.0:
            self.thermostat_on = False
        return rated_kw if self.thermostat_on else 0.0

    def advance(self, tick: Tick, heater_kw: float) -> None:
        draw_kw = 2.0 if self.occupancy.scheduled(tick.start) else 0.1
        loss_kw = 0.03 * (self.temperature_c - 20.0)
        self.temperature_c += (heater_kw - draw_kw - loss_kw) * tick.duration_s / 3600.0 / self.capacity_kwh_per_k
        self.temperature_ref.set(self.temperature_c)


class Ventilation:
    """Fans that run at the speed setpoint between purges (fan power ∝ speed³)."""

    def __init__(self, speed: PointRef, default_speed_pct: float = 40.0) -> None:
        self.speed = speed
        speed.local_default(default_speed_pct)

    def power_kw(self, running: bool, rated_kw: float) -> float:
        return rated_kw if running else rated_kw * (self.speed.read() / 100.0) ** 3

    def advance(self, tick: Tick, power_kw: float) -> None:
        return None


class DeferrableComponent(Component):
    """Writing True to `start` runs the appliance at its rated power for its duration, then `start`
    goes back to False. A companion (tank, fans) may shape the power and draw between runs."""

    def __init__(self, *, rated_kw: float, duration: timedelta, power: PointRef, start: PointRef,
                 energy: PointRef | None = None, companion: HotWaterTank | Ventilation | None = None) -> None:
        self.rated_kw, self.duration = rated_kw, duration
        self.power, self.start, self.energy_ref, self.companion = power, start, energy, companion
        self.energy = EnergyCounter()
        self.run_until: datetime | None = None
        self.runs = 0

    def advance(self, tick: Tick) -> None:
        if self.start.read_bool() and self.run_until is None:
            self.run_until = tick.start + self.duration
            self.runs += 1
        before = self.energy.energy_kwh
        for start, end in split_at(tick.start, tick.end, [self.run_until]):
            running = self.run_until is not None and start < self.run_until
            if self.run_until is not None and start >= self.run_until:
                self.run_until = None
                self.start.set(False)
            power = self.companion.power_kw(running, self.rated_kw) if self.companion else (
                self.rated_kw if running else 0.0)
            seconds = (end - start).total_seconds()
            self.energy.add(power, seconds)
            if self.companion is not None:
                self.companion.advance(Tick(start, end, tick.weather, tick.tz), power)
        if self.run_until is not None and tick.end >= self.run_until:
            self.run_until = None
            self.start.set(False)
        seconds = tick.duration_s
        self.grid_power_kw = (self.energy.energy_kwh - before) * 3600.0 / seconds if seconds > 0 else 0.0
        self.power.set(self.grid_power_kw)
        _set(self.energy_ref, self.energy.energy_kwh)


# --------------------------------------------------------------------------- domestic hot water


@dataclass
class TankPoints:
    temperature: PointRef
    relay: PointRef | None = None
    setpoint: PointRef | None = None
    power: PointRef | None = None
    energy: PointRef | None = None
    volume: PointRef | None = None
    outlet: PointRef | None = None
    timeout: PointRef | None = None


class DhwTankComponent(Component):
    """A water heater and its household. The relay is a lease: unwritten, or once the communication timeout
    has passed, it follows the meter's off-peak contactor signal. The thermostat cuts at the setpoint (its own
    setting when nobody wrote one), never above its setting. The controller reports the mean of its probes and
    the outlet (top) temperature, the heater's power and energy, and the litres drawn from the tank."""

    def __init__(self, tank: StratifiedTank, heater: TankHeater, thermostat: Thermostat,
                 household: HotWaterHousehold, points: TankPoints, *, contactor: Sequence[Window], tz: ZoneInfo,
                 ambient_c: float, outdoor_air: bool, legionella_c: float, legionella_at: datetime,
                 drawn_l: float = 0.0, timeout_default_s: float = 60.0) -> None:
        self.tank, self.heater, self.thermostat, self.household = tank, heater, thermostat, household
        self.points = points
        self.contactor, self.tz, self.ambient_c, self.outdoor_air = list(contactor), tz, ambient_c, outdoor_air
        self.legionella_c = legionella_c
        # The last time the whole tank was at the legionella temperature, and how many times it got there.
        self.legionella_at = legionella_at
        self.legionella_cycles = 0
        self._hot = tank.coldest_c >= legionella_c
        self.energy = EnergyCounter()
        self.drawn_l = drawn_l
        self.lease = Lease(timeout_default_s)
        if points.setpoint is not None:
            points.setpoint.local_default(points.setpoint.clamp(thermostat.setting_c))
        if points.timeout is not None:
            points.timeout.local_default(timeout_default_s)
        if points.relay is not None:
            points.relay.device.on_write(self._on_write)

    @property
    def energy_kwh(self) -> float:
        return self.energy.energy_kwh

    @property
    def outlet_temperature_c(self) -> float:
        return self.tank.upper_c

    def exogenous(self, start: datetime, end: datetime) -> dict[str, float]:
        hours = (end - start).total_seconds() / 3600.0
        return {DRAW_SERIES: self.household.demand_l_40c(start, end) / hours} if hours > 0 else {}

    def _on_write(self, device: SimDevice, point_id: str, value: Value | None, priority: int | None) -> None:
        if self.points.relay is not None and point_id == self.points.relay.point_id:
            self.lease.renew(device.clock.now())

    def advance(self, tick: Tick) -> None:
        p = self.points
        if p.timeout is not None:
            self.lease.timeout_s = max(p.timeout.read(), 1.0)
        before = self.energy.energy_kwh
        for start, end in split_at(tick.start, tick.end, [self.lease.expires_at]):
            self._advance((end - start).total_seconds(), start, end, tick.weather.temperature_c)
        seconds = tick.duration_s
        self.grid_power_kw = (self.energy.energy_kwh - before) * 3600.0 / seconds if seconds > 0 else 0.0
        p.temperature.set(self.tank.mean_c)
        _set(p.outlet, self.tank.upper_c)
        _set(p.power, self.grid_power_kw)
        _set(p.energy, self.energy.energy_kwh)
        _set(p.volume, self.drawn_l)

    def _advance(self, seconds: float, start: datetime, end: datetime, outdoor_c: float) -> None:
        p, tank = self.points, self.tank
        enabled = True
        if p.relay is not None:
            if not self.lease.active(start):
                contactor = in_any(self.contactor, start, self.tz) if self.contactor else True
                if p.relay.read_bool() != contactor:
                    p.relay.set(contactor)
            enabled = p.relay.read_bool()
        setting_c = self.thermostat.setting_c
        if p.setpoint is not None:
            setting_c = min(p.setpoint.read(), setting_c)
        cold_c = cold_water_temperature_c(start)
        litres = litres_from_tank(self.household.demand_l_40c(start, end), tank.upper_c, cold_c)
        tank.draw(litres, cold_c)
        self.drawn_l += litres
        electric_kwh = 0.0
        if self.thermostat.update(tank.lower_c, setting_c) and enabled:
            air_c = outdoor_c if self.outdoor_air else self.ambient_c
            cop = self.heater.cop(air_c, tank.lower_c)
            most = cop * self.heater.electric_power_kw * seconds / 3600.0
            # Up to the thermostat's cut.
            heat = min(most, max(tank.heat_to(setting_c), 0.0))
            if heat < most:
                self.thermostat.calling = False
            tank.heat(heat)
            electric_kwh = heat / cop
        tank.lose(seconds, self.ambient_c)
        self.energy.add(electric_kwh * 3600.0 / seconds if seconds > 0 else 0.0, seconds)
        if tank.coldest_c >= self.legionella_c:
            if not self._hot:
                self.legionella_cycles += 1
                self._hot = True
            self.legionella_at = end
        elif tank.coldest_c < self.legionella_c - 2.0:
            self._hot = False


# --------------------------------------------------------------------------- dwellings and heat


class DwellingComponent(Component):
    """A dwelling's meter: the household's own consumption and that of its equipment the simulation models
    apart (its water heater), which the components of that equipment put on the grid."""

    def __init__(self, model: Household, *, energy: PointRef, power: PointRef | None = None,
                 voltage: PointRef | None = None, current: PointRef | None = None,
                 equipment: Sequence[Component] = ()) -> None:
        self.model, self.energy, self.power, self.voltage, self.current = model, energy, power, voltage, current
        self.equipment = list(equipment)

    def advance(self, tick: Tick) -> None:
        self.grid_power_kw = self.model.advance(tick.start, tick.duration_s)
        equipment_kw = sum(c.grid_power_kw for c in self.equipment)
        self.model.energy.add(equipment_kw, tick.duration_s)
        metered_kw = self.grid_power_kw + equipment_kw
        slot = int(tick.start.timestamp() // 60)
        volts = NOMINAL_VOLTAGE_V + 4.0 * (noise.uniform(self.model.seed, "volts", self.energy.device.id, slot) - 0.5)
        _set(self.power, metered_kw)
        _set(self.energy, self.model.energy.energy_kwh)
        _set(self.voltage, volts)
        _set(self.current, metered_kw * 1000.0 / volts)


class SubstationComponent(Component):
    """A district-heating substation: heat follows the outdoor temperature, the secondary supply follows
    its setpoint plus the heating-curve offset. Its electricity (pumps) is small and counted as a load."""

    def __init__(self, model: HeatSubstation, refs: dict[str, PointRef], seed: int) -> None:
        self.model, self.refs, self.seed = model, refs, seed
        if "secondary-supply-setpoint" in refs:
            refs["secondary-supply-setpoint"].local_default(60.0)
        if "heating-curve-offset" in refs:
            refs["heating-curve-offset"].local_default(0.0)
        self.secondary_supply_c = 60.0

    def advance(self, tick: Tick) -> None:
        refs = self.refs
        target_c = refs["secondary-supply-setpoint"].read() if "secondary-supply-setpoint" in refs else 60.0
        if "heating-curve-offset" in refs:
            target_c += refs["heating-curve-offset"].read()
        # The mixing valve reaches the new supply temperature within a quarter of an hour or so.
        alpha = 1.0 - math.exp(-tick.duration_s / 600.0)
        self.secondary_supply_c += (target_c - self.secondary_supply_c) * alpha
        heat_kw = self.model.advance(tick.local, tick.duration_s, tick.weather.temperature_c, self.secondary_supply_c)
        share = heat_kw / self.model.design_heat_power_kw
        self.grid_power_kw = 0.4 + 1.2 * share  # circulation pumps
        slot = int(tick.start.timestamp() // 900)
        values: dict[str, float | bool] = {
            "primary-supply-temperature": 95.0 - 0.6 * max(tick.weather.temperature_c, -10.0),
            "primary-return-temperature": self.secondary_supply_c - 22.0 * share + 3.0,
            "secondary-supply-temperature": self.secondary_supply_c,
            "heat-power": heat_kw,
            "heat-energy": self.model.energy.energy_kwh,
            "valve-position": 100.0 * share,
            "pump-running": heat_kw > 0.5,
            "dhw-temperature": 57.0 + 2.0 * noise.uniform(self.seed, "dhw", slot),
        }
        for point_id, value in values.items():
            if point_id in refs:
                refs[point_id].set(value)
