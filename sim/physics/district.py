"""The physics of a whole site: builds a component per asset, dwelling and known device from the site
description, steps them all, and sums the grid meter.

Points no component claims keep their value, except a few environmental ones every device may carry
(outdoor temperature, irradiance) and the building-management values handled in `_environment`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gridctl.config.models import (
    BatteryAsset,
    DeferrableAppliance,
    EvChargerPool,
    LightingZone,
    PublicLightingCircuit,
    PvArray,
    Site,
    ThermalZone,
)
from gridctl.config.models import HotWaterTank as TankAsset
from sim.core import SimDevice
from sim.physics import noise
from sim.physics.battery import Battery
from sim.physics.components import (
    BatteryComponent,
    ChargerComponent,
    Component,
    DeferrableComponent,
    DhwTankComponent,
    DwellingComponent,
    HotWaterTank,
    LightingZoneComponent,
    Occupancy,
    PoolComponent,
    PublicLightingComponent,
    PvComponent,
    SubstationComponent,
    TankPoints,
    ThermalZoneComponent,
    Tick,
    VavBox,
    VavPoints,
    Ventilation,
    ZonePoints,
)
from sim.physics.energy import EnergyCounter, ImportExportCounter
from sim.physics.ev import Charger, SessionSchedule
from sim.physics.hot_water import HotWaterHousehold, StratifiedTank, TankHeater, Thermostat
from sim.physics.lighting import LightingZone as LightingModel
from sim.physics.lighting import PublicLightingCircuit as PublicLightingModel
from sim.physics.loads import HeatSubstation, Household
from sim.physics.measurement import Outages, sensor_for
from sim.physics.plant import Plant
from sim.physics.points import PointRef, optional
from sim.physics.pv import PvArray as PvModel
from sim.physics.thermal import HeatPump, RcZone
from sim.physics.weather import Weather

DEFAULT_MAX_STEP = timedelta(seconds=30)
# Loads nobody meters separately, W/m² by building use (plug loads, common areas, ventilation).
_BASE_LOAD_W_PER_M2 = {"residential": 0.6, "school": 4.0, "gym": 1.5, "office": 5.0, "parking": 0.3,
                       "mixed": 3.0, "technical": 0.0}


class _BaseLoads(Component):
    """Building loads the site does not meter separately; office loads follow working hours."""

    def __init__(self, site: Site) -> None:
        self.buildings = [(b.use, b.floor_area_m2 or 0.0) for b in site.buildings]

    def advance(self, tick: Tick) -> None:
        local = tick.local
        working = local.weekday() < 5 and 8 <= local.hour < 19
        total_w = 0.0
        for use, area_m2 in self.buildings:
            density = _BASE_LOAD_W_PER_M2[use]
            if use in ("office", "school") and not working:
                density *= 0.3
            total_w += density * area_m2
        self.grid_power_kw = total_w / 1000.0


class _Environment(Component):
    """Weather and building-management values any device may carry (outdoor temperature, irradiance,
    CO₂, car-park occupancy and lighting), unless an asset already drives them."""

    def __init__(self, district: DistrictPhysics, refs: list[PointRef]) -> None:
        self.district, self.refs = district, refs

    def advance(self, tick: Tick) -> None:
        district, weather, local = self.district, tick.weather, tick.local
        zones = district.zones.values()
        occupied_share = sum(z.occupancy.scheduled(tick.start) for z in zones) / len(zones) if zones else 0.0
        plugged = sum(1 for c in district.chargers.values() if c.model.state != 0)
        commuters = 0.75 if local.weekday() < 5 and 8 <= local.hour < 18 else 0.08
        hour_key = int(tick.start.timestamp() // 3600)
        spaces = plugged + round(260 * commuters * (0.9 + 0.2 * noise.uniform(district.seed, "silo", hour_key)))
        self.grid_power_kw = 0.0
        for ref in self.refs:
            point_id = ref.point_id
            value: float
            if point_id == "outdoor-temperature":
                value = weather.temperature_c
            elif point_id in ("global-irradiance", "irradiance"):
                value = weather.ghi_w_per_m2
            elif point_id == "building-co2":
                value = 430.0 + 420.0 * occupied_share
            elif point_id == "building-energy":
                value = district.building_energy.energy_kwh
            elif point_id == "occupied-spaces":
                value = float(spaces)
            elif point_id == "co-concentration":
                speed = float(ref.device.get("ventilation-speed")) if "ventilation-speed" in ref.device.points else 50.0
                value = 2.0 + 0.12 * spaces * (1.0 - 0.6 * speed / 100.0)
            else:  # lighting-power of a car park: a load of its own
                value = 3.0 + 9.0 * min(spaces / 260.0, 1.0)
                self.grid_power_kw += value
            ref.set(value)


_ENVIRONMENT_POINTS = frozenset({"outdoor-temperature", "global-irradiance", "irradiance", "building-co2",
                                 "building-energy", "occupied-spaces", "co-concentration", "lighting-power"})


@dataclass
class GridMeter:
    power: PointRef | None
    import_energy: PointRef | None
    export_energy: PointRef | None
    extras: dict[str, PointRef]


class DistrictPhysics:
    """Every model of one site, stepped together. `step(now)` advances from the last step to `now`."""

    def __init__(self, site: Site, devices: dict[str, SimDevice], start: datetime, seed: int = 0,
                 max_step: timedelta = DEFAULT_MAX_STEP, plant: Plant | None = None,
                 instruments: bool = True) -> None:
        self.site = site
        # The plant as it really is: the site file's values drawn from their spreads (sim/PLANT.md).
        self.plant = plant if plant is not None else Plant(site, seed)
        self.devices = devices
        self.seed = seed
        self.tz = site.tz
        self.max_step = max_step
        self.time = start
        self.weather = Weather(site.location.latitude, site.location.longitude, seed,
                               elevation_m=site.location.elevation_m)
        self.components: list[Component] = []
        self.claimed: set[str] = set()
        self.zones: dict[str, ThermalZoneComponent] = {}
        self.batteries: dict[str, BatteryComponent] = {}
        self.chargers: dict[str, ChargerComponent] = {}
        self.lighting: dict[str, LightingZoneComponent] = {}
        self.public_lighting: dict[str, PublicLightingComponent] = {}
        self.pv: dict[str, PvComponent] = {}
        self.appliances: dict[str, DeferrableComponent] = {}
        self.dwellings: dict[str, DwellingComponent] = {}
        self.tanks: dict[str, DhwTankComponent] = {}
        self.grid = ImportExportCounter(*self._initial_grid_counters())
        self.building_energy = EnergyCounter()
        self.grid_power_kw = 0.0
        self.load_power_kw = 0.0
        # When each device's communication drops out (the live loop and the warm-up history share it).
        self.outages = Outages(seed, enabled=instruments)
        if instruments:
            self._fit_sensors()
        self._build(start)
        self._grid_meter = self._build_grid_meter()
        self._advance(start, start)

    # ------------------------------------------------------------------ references

    def ref(self, address: str | None) -> PointRef | None:
        if address is None:
            return None
        device_id, _, point_id = address.partition("/")
        device = self.devices.get(device_id)
        if device is None or point_id not in device.points:
            return None
        self.claimed.add(address)
        return PointRef(device, point_id)

    def _required(self, address: str) -> PointRef:
        ref = self.ref(address)
        if ref is None:
            raise KeyError(f"{address} is not a point of a simulated device")
        return ref

    def _on_device(self, anchor: PointRef | None, point_id: str) -> PointRef | None:
        """A point that sits next to `anchor` on the same device (device maps carry more than the roles)."""
        if anchor is None:
            return None
        ref = optional(anchor.device, point_id)
        if ref is not None:
            self.claimed.add(ref.address)
        return ref

    def _initial_counter(self, address: str, low: float, high: float) -> float:
        return round(low + (high - low) * noise.uniform(self.seed, "counter", address), 1)

    def _initial_grid_counters(self) -> tuple[float, float]:
        points = self.site.grid.points
        return (self._initial_counter(points.get("import_energy", "grid/import"), 20_000, 80_000),
                self._initial_counter(points.get("export_energy", "grid/export"), 1_000, 8_000))

    def _fit_sensors(self) -> None:
        for address, device, point in self.site.all_points():
            simulated = self.devices.get(device.id)
            if simulated is None or point.kind != "measurement" or point.id not in simulated.points:
                continue
            sensor = sensor_for(self.seed, address, point.unit)
            if sensor is not None:
                simulated.sensors[point.id] = sensor

    # ------------------------------------------------------------------ building

    def _build(self, start: datetime) -> None:
        for asset in self.site.assets:
            if isinstance(asset, BatteryAsset):
                self._build_battery(asset)
            elif isinstance(asset, EvChargerPool):
                self._build_pool(asset)
            elif isinstance(asset, ThermalZone):
                self._build_zone(asset)
            elif isinstance(asset, LightingZone):
                self._build_lighting(asset)
            elif isinstance(asset, PublicLightingCircuit):
                self._build_public_lighting(asset)
            elif isinstance(asset, PvArray):
                self._build_pv(asset)
            elif isinstance(asset, DeferrableAppliance):
                self._build_appliance(asset)
            elif isinstance(asset, TankAsset):
                self._build_tank(asset, start)
        for dwelling in self.site.dwellings:
            energy = self._required(dwelling.meter)
            model = Household(dwelling.id, self.seed, self.tz, dwelling.floor_area_m2)
            model.energy.energy_kwh = self._initial_counter(dwelling.meter, 1_000, 15_000)
            # A dwelling's water heater is behind its meter.
            equipment = [self.tanks[a.id] for a in self.site.assets if a.id in self.tanks and a.dwelling == dwelling.id]
            component = DwellingComponent(model, energy=energy, power=self._on_device(energy, "power"),
                                          voltage=self._on_device(energy, "voltage"),
                                          current=self._on_device(energy, "current"), equipment=equipment)
            self.dwellings[dwelling.id] = component
            self.components.append(component)
        for device in self.devices.values():
            if "heat-power" in device.points and f"{device.id}/heat-power" not in self.claimed:
                refs = {pid: self._required(f"{device.id}/{pid}") for pid in device.points
                        if f"{device.id}/{pid}" not in self.claimed and pid != "outdoor-temperature"}
                model = HeatSubstation()
                model.energy.energy_kwh = self._initial_counter(f"{device.id}/heat-energy", 50_000, 400_000)
                self.components.append(SubstationComponent(model, refs, self.seed))
        self._attach_vavs()
        self.components.append(_BaseLoads(self.site))
        environment: list[PointRef] = []
        for device in self.devices.values():
            for point_id in device.points:
                address = f"{device.id}/{point_id}"
                if address in self.claimed:
                    continue
                if point_id in _ENVIRONMENT_POINTS:
                    environment.append(self._required(address))
                elif point_id in _LOCAL_DEFAULTS:
                    PointRef(device, point_id).local_default(_LOCAL_DEFAULTS[point_id])
        self.components.append(_Environment(self, environment))

    def _build_battery(self, asset: BatteryAsset) -> None:
        points = asset.points
        setpoint = self._required(points["power_setpoint"])
        true = self.plant.assets[asset.id]
        model = Battery(true["capacity_kwh"].true, asset.max_charge_power_kw, asset.max_discharge_power_kw,
                        true["charge_efficiency"].true, true["discharge_efficiency"].true, asset.soc_min_pct,
                        asset.soc_max_pct, soc_pct=(asset.soc_min_pct + asset.soc_max_pct) / 2.0)
        model.charged.energy_kwh = self._initial_counter(points.get("charged_energy", asset.id), 5_000, 20_000)
        model.discharged.energy_kwh = model.charged.energy_kwh * 0.88
        component = BatteryComponent(
            model, power=self._required(points["power"]), setpoint=setpoint, soc=self._required(points["soc"]),
            charged=self.ref(points.get("charged_energy")), discharged=self.ref(points.get("discharged_energy")),
            watchdog=self._on_device(setpoint, "watchdog-timeout"), remote=self._on_device(setpoint, "remote-control"),
            state=self._on_device(setpoint, "state"), cell_temperature=self._on_device(setpoint, "cell-temperature"),
        )
        self.batteries[asset.id] = component
        self.components.append(component)

    def _build_pool(self, asset: EvChargerPool) -> None:
        members: list[ChargerComponent] = []
        for charger in asset.chargers:
            points = charger.points
            current_limit = self._required(points["current_limit"])
            schedule = SessionSchedule(self.seed, charger.id, asset.kind, self.tz)
            model = Charger(schedule, phases=charger.phases, voltage_v=charger.voltage_v,
                            min_current_a=charger.min_current_a, max_current_a=charger.max_current_a,
                            lifetime_kwh=self._initial_counter(points.get("energy", charger.id), 500, 20_000))
            component = ChargerComponent(
                model, current_limit=current_limit, power=self._required(points["power"]),
                plug_state=self._required(points["plug_state"]),
                session_energy=self.ref(points.get("session_energy")), energy=self.ref(points.get("energy")),
                fallback_current=self._on_device(current_limit, "fallback-current"),
                communication_timeout=self._on_device(current_limit, "communication-timeout"),
                phase_currents=[r for r in (self._on_device(current_limit, f"current-l{n}") for n in (1, 2, 3)) if r],
                time_to_departure=self.ref(points.get("time_to_departure")),
                energy_request=self.ref(points.get("energy_request")),
            )
            self.chargers[charger.id] = component
            members.append(component)
            self.components.append(component)
        pool_power = self.ref(asset.points.get("power"))
        if pool_power is not None:
            self.components.append(PoolComponent(members, pool_power))

    def _occupancy(self, key: str, windows: Iterable[Any]) -> Occupancy:
        return Occupancy(self.seed, key, list(windows), self.tz)

    def _build_zone(self, asset: ThermalZone) -> None:
        points = asset.points
        temperature = self._required(points["temperature"])
        heat_pump_power = self._required(points["heat_pump_power"])
        hp, air = heat_pump_power, temperature
        zone_points = ZonePoints(
            temperature=temperature, setpoint=self._required(points["setpoint"]), heat_pump_power=heat_pump_power,
            heat_pump_energy=self.ref(points.get("heat_pump_energy")), occupancy=self.ref(points.get("occupancy")),
            mode=self.ref(points.get("mode")),
            thermal_power=self._on_device(hp, "thermal-power"), cop=self._on_device(hp, "cop"),
            water_supply_temperature=self._on_device(hp, "supply-temperature") if hp.device is not air.device else None,
            water_supply_setpoint=self._on_device(hp, "supply-setpoint"), enable=self._on_device(hp, "enable"),
            status=self._on_device(hp, "status"), compressor_running=self._on_device(hp, "compressor-running"),
            air_supply_temperature=self._on_device(air, "supply-temperature") if hp.device is not air.device else None,
            airflow=self._on_device(air, "supply-airflow"), heating_valve=self._on_device(air, "heating-valve"),
            fan_speed=self._on_device(air, "fan-speed"), fan_status=self._on_device(air, "fan-status"),
        )
        true = {name: p.true for name, p in self.plant.assets[asset.id].items()}
        two_node = asset.thermal_model.structure == "2R2C"
        occupied_c = asset.comfort_occupied.min_temperature_c + 1.0
        unoccupied_c = asset.comfort_unoccupied.min_temperature_c + 1.0
        zone = RcZone(true["resistance_k_per_kw"], true["capacitance_kwh_per_k"],
                      true["envelope_resistance_k_per_kw"] if two_node else None,
                      true["envelope_capacitance_kwh_per_k"] if two_node else None,
                      air_temperature_c=occupied_c, envelope_temperature_c=occupied_c - 3.0)
        heat_pump = HeatPump(true["heat_pump.max_electric_power_kw"], true["heat_pump.carnot_efficiency"],
                             asset.heat_pump.supply_temperature_c, asset.heat_pump.approach_k)
        occupancy_key = points.get("occupancy", asset.id)
        component = ThermalZoneComponent(
            zone, heat_pump, zone_points, self._occupancy(occupancy_key, asset.occupancy),
            floor_area_m2=asset.floor_area_m2, solar_aperture_m2=true["solar_aperture_m2"],
            internal_gain_w_per_m2=(true["internal_gain_occupied_w_per_m2"], true["internal_gain_idle_w_per_m2"]),
            occupied_setpoint_c=occupied_c, unoccupied_setpoint_c=unoccupied_c,
            free_cooling_above_c=asset.comfort_occupied.max_temperature_c - 1.0,
        )
        self.zones[asset.id] = component
        self.components.append(component)

    def _attach_vavs(self) -> None:
        """VAV boxes are not assets: share them out, in file order, among the zones served by an air handler."""
        vav_devices = [d for d in self.devices.values()
                       if "zone-temperature" in d.points and f"{d.id}/zone-temperature" not in self.claimed]
        zones = [z for z in self.zones.values() if z.points.airflow is not None] or list(self.zones.values())
        if not vav_devices or not zones:
            return
        per_zone = -(-len(vav_devices) // len(zones))
        for index, device in enumerate(vav_devices):
            zone = zones[min(index // per_zone, len(zones) - 1)]
            temperature = self._required(f"{device.id}/zone-temperature")
            vav_points = VavPoints(
                zone_temperature=temperature, setpoint=self._on_device(temperature, "zone-setpoint"),
                damper=self._on_device(temperature, "damper-position"), airflow=self._on_device(temperature, "airflow"),
                co2=self._on_device(temperature, "co2"), occupancy=self._on_device(temperature, "occupancy"),
            )
            occupancy = self._occupancy(f"{device.id}/occupancy", zone.occupancy.windows)
            zone.vavs.append(VavBox(vav_points, occupancy, self.seed))

    def _build_lighting(self, asset: LightingZone) -> None:
        points = asset.points
        daylight_factor = 0.012 + 0.02 * noise.uniform(self.seed, "daylight", asset.id)
        model = LightingModel(asset.installed_power_kw, asset.rated_illuminance_lx, daylight_factor)
        model.energy.energy_kwh = self._initial_counter(points.get("energy", asset.id), 500, 20_000)
        occupancy_key = points.get("occupancy", asset.id)
        component = LightingZoneComponent(
            model, self._occupancy(occupancy_key, asset.occupancy), dimming=self._required(points["dimming"]),
            power=self._required(points["power"]), occupancy_point=self.ref(points.get("occupancy")),
            illuminance=self.ref(points.get("illuminance")), energy=self.ref(points.get("energy")),
        )
        self.lighting[asset.id] = component
        self.components.append(component)

    def _build_public_lighting(self, asset: PublicLightingCircuit) -> None:
        points = asset.points
        dimming = self._required(points["dimming"])
        model = PublicLightingModel(asset.installed_power_kw)
        model.energy.energy_kwh = self._initial_counter(points.get("energy", asset.id), 1_000, 40_000)
        component = PublicLightingComponent(model, dimming=dimming, power=self._required(points["power"]),
                                            energy=self.ref(points.get("energy")),
                                            photocell=self._on_device(dimming, "photocell-dark"))
        self.public_lighting[asset.id] = component
        self.components.append(component)

    def _build_pv(self, asset: PvArray) -> None:
        points = asset.points
        power = self._required(points["power"])
        true = self.plant.assets[asset.id]
        model = PvModel(true["peak_power_kwp"].true, asset.inverter_max_power_kw or asset.peak_power_kwp,
                        performance_ratio=true["performance_ratio"].true,
                        inverter_efficiency=true["inverter_efficiency"].true)
        model.energy.energy_kwh = self._initial_counter(points.get("energy", asset.id), 10_000, 300_000)
        component = PvComponent(
            model, tilt_deg=asset.tilt_deg, azimuth_deg=asset.azimuth_deg, power=power,
            energy=self.ref(points.get("energy")), curtailment_limit=self.ref(points.get("curtailment_limit")),
            irradiance=self.ref(points.get("irradiance")), dc_power=self._on_device(power, "dc-power"),
            status=self._on_device(power, "status"), cabinet_temperature=self._on_device(power, "cabinet-temperature"),
        )
        self.pv[asset.id] = component
        self.components.append(component)

    def _build_appliance(self, asset: DeferrableAppliance) -> None:
        points = asset.points
        power = self._required(points["power"])
        companion: HotWaterTank | Ventilation | None = None
        if "dhw-temperature" in power.device.points:
            tank_temperature = self._on_device(power, "dhw-temperature")
            assert tank_temperature is not None
            companion = HotWaterTank(tank_temperature, self._occupancy(asset.id, [asset.window]))
            building_hours = [w for z in self.site.assets if isinstance(z, ThermalZone) for w in z.occupancy]
            companion.occupancy = self._occupancy(asset.id, building_hours)
        elif "ventilation-speed" in power.device.points:
            speed = self._on_device(power, "ventilation-speed")
            assert speed is not None
            companion = Ventilation(speed)
        component = DeferrableComponent(rated_kw=asset.power_kw, duration=timedelta(minutes=asset.duration_min),
                                        power=power, start=self._required(points["start"]),
                                        energy=self.ref(points.get("energy")), companion=companion)
        component.energy.energy_kwh = self._initial_counter(points.get("energy", asset.id), 100, 5_000)
        self.appliances[asset.id] = component
        self.components.append(component)

    def _build_tank(self, asset: TankAsset, start: datetime) -> None:
        points = asset.points
        temperature = self._required(points["tank_temperature"])
        command = self.ref(points.get("heater_command"))
        setpoint = self.ref(points.get("setpoint")) or self._on_device(temperature, "setpoint")
        tank_points = TankPoints(
            temperature=temperature, relay=command, setpoint=setpoint,
            power=self.ref(points.get("heater_power")) or self._on_device(temperature, "heater-power"),
            energy=self.ref(points.get("heater_energy")) or self._on_device(temperature, "heater-energy"),
            volume=self.ref(points.get("draw_volume")) or self._on_device(temperature, "drawn-volume"),
            outlet=self._on_device(temperature, "outlet-temperature"),
            timeout=self._on_device(command or setpoint or temperature, "communication-timeout"),
        )
        true = {name: p.true for name, p in self.plant.assets[asset.id].items()}
        # Somewhere between the minimum and the thermostat, a little stratified.
        mean_c = asset.min_temperature_c + 3.0 + (true["max_temperature_c"] - asset.min_temperature_c - 6.0) * \
            noise.uniform(self.seed, "dhw-initial", asset.id)
        tank = StratifiedTank.uniform(true["volume_l"], true["standing_loss_w_per_k"] / 1000.0, mean_c, spread_k=4.0)
        heat_pump = asset.heater.kind == "heat_pump"
        heater = TankHeater(true["heater.electric_power_kw"], true.get("heater.carnot_share") if heat_pump else None)
        # An electronic controller (heat pumps) re-arms a few kelvin below its setting, a rod thermostat further.
        thermostat = Thermostat(true["max_temperature_c"], 4.0 if heat_pump else 7.0)
        household = HotWaterHousehold(asset.dwelling or asset.id, self.seed, self.tz, true["draws.daily_l_40c"])
        contactor = asset.contactor_windows if asset.contactor_windows is not None else \
            self.site.tariff.offpeak_windows
        component = DhwTankComponent(
            tank, heater, thermostat, household, tank_points, contactor=contactor, tz=self.tz,
            ambient_c=asset.ambient_temperature_c, outdoor_air=heat_pump and asset.heater.air == "outdoor",
            legionella_c=asset.legionella.temperature_c,
            # Until the run the off-peak contactor heated it to its thermostat every night: disinfected some
            # time during the last day (nobody tells gridctl when).
            legionella_at=start - timedelta(days=1) * noise.uniform(self.seed, "dhw-legionella", asset.id),
            drawn_l=self._initial_counter(f"{asset.id}/drawn", 1_000, 200_000),
        )
        component.energy.energy_kwh = self._initial_counter(points.get("heater_energy", asset.id), 100, 8_000)
        self.tanks[asset.id] = component
        self.components.append(component)

    def _build_grid_meter(self) -> GridMeter:
        points = self.site.grid.points
        power = self.ref(points.get("power"))
        extras: dict[str, PointRef] = {}
        if power is not None:
            for point_id in power.device.points:
                ref = self._on_device(power, point_id)
                if ref is not None and ref.address not in (points.get("power"), points.get("import_energy"),
                                                           points.get("export_energy")):
                    extras[point_id] = ref
        return GridMeter(power, self.ref(points.get("import_energy")), self.ref(points.get("export_energy")), extras)

    # ------------------------------------------------------------------ stepping

    def step(self, now: datetime) -> None:
        """Advance every model from the last step to `now`, in steps of at most `max_step`."""
        while self.time < now:
            end = min(now, self.time + self.max_step)
            self._advance(self.time, end)
            self.time = end

    def _advance(self, start: datetime, end: datetime) -> None:
        tick = Tick(start, end, self.weather.sample(start), self.tz)
        for component in self.components:
            component.advance(tick)
        loads = sum(c.grid_power_kw for c in self.components if c.is_load)
        self.load_power_kw = loads
        self.grid_power_kw = sum(c.grid_power_kw for c in self.components)
        self.grid.add(self.grid_power_kw, tick.duration_s)
        self.building_energy.add(loads, tick.duration_s)
        self._write_grid_meter(tick)

    def _write_grid_meter(self, tick: Tick) -> None:
        meter = self._grid_meter
        if meter.power is not None:
            meter.power.set(self.grid_power_kw)
        if meter.import_energy is not None:
            meter.import_energy.set(self.grid.imported.energy_kwh)
        if meter.export_energy is not None:
            meter.export_energy.set(self.grid.exported.energy_kwh)
        slot = int(tick.start.timestamp() // 60)
        shares = [1.0 + 0.06 * (noise.uniform(self.seed, "phase", n, slot // 15) - 0.5) for n in range(3)]
        total = sum(shares)
        for n, share in enumerate(shares, start=1):
            phase_kw = self.grid_power_kw * share / total
            volts = 230.0 + 5.0 * (noise.uniform(self.seed, "grid-volts", n, slot) - 0.5)
            values = {f"power-l{n}": phase_kw, f"voltage-l{n}": volts, f"current-l{n}": abs(phase_kw) * 1000.0 / volts}
            for point_id, value in values.items():
                if point_id in meter.extras:
                    meter.extras[point_id].set(value)
        others = {"reactive-power": 0.18 * abs(self.grid_power_kw),
                  "frequency": 50.0 + 0.04 * (noise.uniform(self.seed, "hz", slot) - 0.5),
                  "power-factor": 0.985}
        for point_id, value in others.items():
            if point_id in meter.extras:
                meter.extras[point_id].set(value)

    # ------------------------------------------------------------------ truth

    def exogenous(self, start: datetime, end: datetime) -> dict[str, dict[str, float]]:
        """Per asset, the rates of what no controller changes over [start, end) (a household's hot water)."""
        return {key: rates for key, component in self.tanks.items() if (rates := component.exogenous(start, end))}

    def state(self) -> dict[str, Any]:
        """The true state of the site (what the KPIs are computed from), in internal units."""
        return {
            "time": self.time,
            "outdoor_temperature_c": self.weather.temperature_c(self.time),
            "grid_power_kw": self.grid_power_kw,
            "grid_import_kwh": self.grid.imported.energy_kwh,
            "grid_export_kwh": self.grid.exported.energy_kwh,
            "load_power_kw": self.load_power_kw,
            "zone_temperatures_c": {k: z.zone.air_temperature_c for k, z in self.zones.items()},
            "heat_pump_energy_kwh": {k: z.energy.energy_kwh for k, z in self.zones.items()},
            "battery_soc_pct": {k: b.model.soc_pct for k, b in self.batteries.items()},
            "pv_energy_kwh": {k: p.model.energy.energy_kwh for k, p in self.pv.items()},
            "charger_energy_kwh": {k: c.model.energy.energy_kwh for k, c in self.chargers.items()},
            "lighting_energy_kwh": {k: c.model.energy.energy_kwh for k, c in self.lighting.items()},
            "public_lighting_energy_kwh": {k: c.model.energy.energy_kwh for k, c in self.public_lighting.items()},
            "dwelling_energy_kwh": {k: d.model.energy.energy_kwh for k, d in self.dwellings.items()},
            "tank_temperatures_c": {k: t.tank.mean_c for k, t in self.tanks.items()},
            "tank_energy_kwh": {k: t.energy_kwh for k, t in self.tanks.items()},
        }


# Values the devices' own logic holds for set-and-forget points nobody models further.
_LOCAL_DEFAULTS: dict[str, float | bool] = {
    "plant-mode": 1,
    "local-mode": False,
    "filter-alarm": False,
    "fire-alarm": False,
    "enable": True,
    "supply-setpoint": 35.0,
    "dhw-temperature": 55.0,
}
