"""Typed site description: site, devices with their points, assets, dwellings.

One schema for the three protocols: a point carries what every point has (id, unit, kind,
limits) plus the fields of its device's protocol. Assets and dwellings refer to points by
address ``"<device_id>/<point_id>"``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import time
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.codec import REGISTER_COUNT
from gridctl.config.units import UNITS

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
ADDRESS_PATTERN = r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$"

Identifier = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
Address = Annotated[str, Field(pattern=ADDRESS_PATTERN)]


class Strict(BaseModel):
    """Base for every site model: unknown fields are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- points


class PointKind(StrEnum):
    MEASUREMENT = "measurement"
    ENERGY_COUNTER = "energy_counter"
    SETPOINT = "setpoint"
    STATE = "state"


class PointBase(Strict):
    id: Identifier
    name: str | None = None
    unit: str
    kind: PointKind
    writable: bool = False
    min: float | None = None
    max: float | None = None
    # Enumerated states (kind=state): raw value -> label.
    states: dict[int, str] | None = None
    # Writable points only. With a lease, gridctl re-sends the value every `lease_s` and the device
    # falls back on its own after ~3 × lease_s of silence (values held in RAM). Without one, the
    # value is written only when it changes (devices that keep setpoints in EEPROM).
    lease_s: float | None = Field(default=None, gt=0, le=3600)
    # Largest change gridctl makes per minute (in the point's unit); None = no ramp limit.
    ramp_per_minute: float | None = Field(default=None, gt=0)
    # Written when gridctl lets go of the point (hands off, shutdown) and the protocol has no
    # relinquish of its own; BACnet points relinquish their priority instead, except on an object
    # that is not commandable (no priority array), which gets this value or is left as it is.
    relinquish_value: float | None = None

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, unit: str) -> str:
        if unit not in UNITS:
            known = ", ".join(repr(u) for u in UNITS)
            raise ValueError(f"unknown unit {unit!r}; known units: {known}")
        return unit

    @model_validator(mode="after")
    def _limits_ordered(self) -> PointBase:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


ModbusFunction = Literal["coil", "discrete_input", "holding_register", "input_register"]
ModbusDataType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
ByteOrder = Literal["big", "little"]

class ModbusPoint(PointBase):
    function: ModbusFunction
    # "register" in the files; renamed here because pydantic models already have a `register`.
    register_address: int = Field(alias="register", ge=0, le=65535)
    data_type: ModbusDataType
    word_order: ByteOrder = "big"
    byte_order: ByteOrder = "big"
    scale: float = 1.0
    offset: float = 0.0
    # One bit of a 16-bit register (bit fields and status words).
    bit: int | None = Field(default=None, ge=0, le=15)

    @property
    def register_count(self) -> int:
        return 1 if self.function in ("coil", "discrete_input") else REGISTER_COUNT[self.data_type]


BacnetObjectType = Literal[
    "analog-input",
    "analog-output",
    "analog-value",
    "binary-input",
    "binary-output",
    "binary-value",
    "multi-state-input",
    "multi-state-output",
    "multi-state-value",
    "accumulator",
]


class BacnetPoint(PointBase):
    object_type: BacnetObjectType
    instance: int = Field(ge=0, le=4_194_302)
    property: str = "present-value"
    # Priorities 1-8 belong to life safety and human operators; a supervisory optimiser writes at 9-16.
    priority: int | None = Field(default=None, ge=1, le=16)


OpcuaVariantType = Literal[
    "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double",
    "String",
]
NODE_ID_PATTERN = r"^(nsu=[^;]+;|ns=0;)?[isgb]=.+$"


class OpcuaPoint(PointBase):
    # ExpandedNodeId with the namespace given by URI (indexes differ between servers).
    node_id: Annotated[str, Field(pattern=NODE_ID_PATTERN)]
    data_type: OpcuaVariantType = "Double"


# --------------------------------------------------------------------------- devices


class Watchdog(Strict):
    """A heartbeat point gridctl writes every `period_s`; the device's own logic lets go of gridctl's
    commands (BACnet: releases its priority; others: back to local values) after `timeout_s` without one.
    For points without a device-side lease: BACnet priority writes, OPC-UA."""

    point: Annotated[str, Field(pattern=ID_PATTERN)]
    period_s: float = Field(gt=0, le=3600)
    timeout_s: float = Field(gt=0, le=86_400)

    @model_validator(mode="after")
    def _timeout_spans_periods(self) -> Watchdog:
        if self.timeout_s < 2 * self.period_s:
            raise ValueError(f"timeout_s ({self.timeout_s:g}) must be at least two periods ({2 * self.period_s:g} s):"
                             " one late heartbeat must not make the device let go")
        return self


class DeviceBase(Strict):
    id: Identifier
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    # Device map (a file under the site's maps/ folder) whose points this device exposes.
    map: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")] | None = None
    poll_interval_s: float = Field(default=10.0, gt=0, le=3600)
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    # A state point of this device that is true while the equipment is in local (manual) mode:
    # gridctl then stops writing to the device and reports an override.
    local_mode_point: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    # A heartbeat gridctl writes so the device can fall back on its own when gridctl dies.
    watchdog: Watchdog | None = None


class ModbusDevice(DeviceBase):
    protocol: Literal["modbus"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    # Registers further apart than this are read in separate requests.
    max_gap_registers: int = Field(default=8, ge=0, le=124)
    points: list[ModbusPoint] = Field(default_factory=list)


class BacnetDevice(DeviceBase):
    protocol: Literal["bacnet"]
    # "ip:port" of the device's BACnet/IP interface.
    address: Annotated[str, Field(pattern=r"^[0-9.]+(:[0-9]+)?$")]
    device_instance: int = Field(ge=0, le=4_194_302)
    default_priority: int = Field(default=10, ge=9, le=16)
    points: list[BacnetPoint] = Field(default_factory=list)


class BacnetSettings(Strict):
    """Where gridctl talks BACnet/IP from, for every BACnet device of the site: one address and port, as
    a BACnet/IP node has, so a BBMD's table or a firewall rule can name it."""

    # IPv4 address of the interface to talk from; none: loopback for loopback devices, else every
    # interface ("0.0.0.0").
    local_address: str | None = None
    # UDP port; 0: a free port for each device, chosen by the system. A fixed port is one socket
    # shared by the site's BACnet devices (47808 is BACnet/IP's own).
    local_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("local_address")
    @classmethod
    def _unicast_ipv4(cls, address: str | None) -> str | None:
        if address is None:
            return None
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IPv4 address (a.b.c.d, without port or prefix)") from None
        if parsed.is_multicast or parsed == ipaddress.IPv4Address("255.255.255.255"):
            raise ValueError(f"{address} is not the address of an interface")
        return address


class OpcuaSecurity(Strict):
    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OpcuaSecurity:
        if self.policy == "None" and self.mode != "None":
            raise ValueError("mode must be None when policy is None")
        if self.policy != "None":
            if self.mode == "None":
                raise ValueError(f"policy {self.policy} needs mode Sign or SignAndEncrypt")
            missing = [f for f in ("certificate", "private_key") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"policy {self.policy} needs {', '.join(missing)}")
        return self


class OpcuaDevice(DeviceBase):
    protocol: Literal["opcua"]
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://[^/]+(/.*)?$")]
    security: OpcuaSecurity = Field(default_factory=OpcuaSecurity)
    subscription: bool = False
    points: list[OpcuaPoint] = Field(default_factory=list)


Device = Annotated[ModbusDevice | BacnetDevice | OpcuaDevice, Field(discriminator="protocol")]
Point = ModbusPoint | BacnetPoint | OpcuaPoint


class ModbusMap(Strict):
    protocol: Literal["modbus"]
    description: str | None = None
    points: list[ModbusPoint]


class BacnetMap(Strict):
    protocol: Literal["bacnet"]
    description: str | None = None
    points: list[BacnetPoint]


class OpcuaMap(Strict):
    protocol: Literal["opcua"]
    description: str | None = None
    points: list[OpcuaPoint]


DeviceMap = Annotated[ModbusMap | BacnetMap | OpcuaMap, Field(discriminator="protocol")]


# --------------------------------------------------------------------------- assets


class ComfortBand(Strict):
    min_temperature_c: float
    max_temperature_c: float

    @model_validator(mode="after")
    def _ordered(self) -> ComfortBand:
        if self.min_temperature_c >= self.max_temperature_c:
            raise ValueError("min_temperature_c must be below max_temperature_c")
        return self


class TimeWindow(Strict):
    """A daily window in the site's local time; `end` before `start` wraps past midnight."""

    start: time
    end: time
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    )

    @field_validator("start", "end")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        # Local times are compared with the site's clock; one with an offset cannot be.
        if value.tzinfo is not None:
            raise ValueError("must be a local wall-clock time without an offset (e.g. 22:00)")
        return value


class AssetBase(Strict):
    id: Identifier
    name: str | None = None
    building: Identifier | None = None
    # The dwelling it belongs to (a resident's water heater): its devices, readings and plan are that
    # dwelling's private data, as its meter is.
    dwelling: Identifier | None = None
    points: dict[str, Address] = Field(default_factory=dict)


class BatteryAsset(AssetBase):
    type: Literal["battery"]
    capacity_kwh: float = Field(gt=0)
    max_charge_power_kw: float = Field(gt=0)
    max_discharge_power_kw: float = Field(gt=0)
    charge_efficiency: float = Field(default=0.95, gt=0, le=1)
    discharge_efficiency: float = Field(default=0.95, gt=0, le=1)
    soc_min_pct: float = Field(default=10, ge=0, le=100)
    soc_max_pct: float = Field(default=95, ge=0, le=100)
    cycling_cost_eur_per_kwh: float = Field(default=0.02, ge=0)
    # Energy the battery loses by itself (self-discharge, standby consumption), share of what it holds.
    standing_loss_pct_per_day: float = Field(default=0.0, ge=0, lt=100)


class EvCharger(Strict):
    id: Identifier
    max_current_a: float = Field(gt=0, le=80)
    min_current_a: float = Field(default=6.0, ge=0)
    phases: Literal[1, 3] = 3
    voltage_v: float = 230.0
    points: dict[str, Address]

    @property
    def max_power_kw(self) -> float:
        return self.max_current_a * self.voltage_v * self.phases / 1000.0


class EvChargerPool(AssetBase):
    type: Literal["ev_charger_pool"]
    pool_limit_kw: float = Field(gt=0)
    kind: Literal["home", "workplace", "public"] = "public"
    chargers: list[EvCharger] = Field(min_length=1)


class HeatPump(Strict):
    max_electric_power_kw: float = Field(gt=0)
    # COP = carnot_efficiency × Carnot COP at (supply, outdoor) with an approach temperature.
    carnot_efficiency: float = Field(default=0.55, gt=0, le=1)
    supply_temperature_c: float = 35.0
    approach_k: float = 5.0


class ThermalModel(Strict):
    """1R1C (envelope only) or 2R2C (air + envelope) lumped model of the zone."""

    structure: Literal["1R1C", "2R2C"] = "1R1C"
    resistance_k_per_kw: float = Field(gt=0)
    capacitance_kwh_per_k: float = Field(gt=0)
    envelope_resistance_k_per_kw: float | None = Field(default=None, gt=0)
    envelope_capacitance_kwh_per_k: float | None = Field(default=None, gt=0)
    solar_aperture_m2: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _two_nodes(self) -> ThermalModel:
        if self.structure == "2R2C" and (
            self.envelope_resistance_k_per_kw is None or self.envelope_capacitance_kwh_per_k is None
        ):
            raise ValueError("2R2C needs envelope_resistance_k_per_kw and envelope_capacitance_kwh_per_k")
        return self


class ThermalZone(AssetBase):
    type: Literal["thermal_zone"]
    floor_area_m2: float = Field(gt=0)
    heat_pump: HeatPump
    thermal_model: ThermalModel
    comfort_occupied: ComfortBand
    comfort_unoccupied: ComfortBand
    occupancy: list[TimeWindow] = Field(default_factory=list)


class DeferrableAppliance(AssetBase):
    type: Literal["deferrable_appliance"]
    power_kw: float = Field(gt=0)
    duration_min: float = Field(gt=0)
    window: TimeWindow


class LightingZone(AssetBase):
    type: Literal["lighting_zone"]
    installed_power_kw: float = Field(gt=0)
    floor_area_m2: float = Field(gt=0)
    required_illuminance_lx: float = Field(default=500, gt=0)
    # Illuminance at 100 % dimming without daylight.
    rated_illuminance_lx: float = Field(default=600, gt=0)
    demand_response_dimming_pct: float = Field(default=20, ge=0, le=100)
    occupancy: list[TimeWindow] = Field(default_factory=list)


class LightingPeriod(Strict):
    window: TimeWindow
    lighting_class: Annotated[str, Field(pattern=r"^(M[1-6]|P[1-6]|C[0-5])$")]
    dimming_pct: float = Field(ge=0, le=100)


class PublicLightingCircuit(AssetBase):
    type: Literal["public_lighting_circuit"]
    installed_power_kw: float = Field(gt=0)
    light_points: int = Field(gt=0)
    minimum_dimming_pct: float = Field(default=30, ge=0, le=100)
    periods: list[LightingPeriod] = Field(default_factory=list)
    curfew: TimeWindow | None = None


class PvArray(AssetBase):
    type: Literal["pv"]
    peak_power_kwp: float = Field(gt=0)
    tilt_deg: float = Field(default=30, ge=0, le=90)
    azimuth_deg: float = Field(default=180, ge=0, lt=360)
    inverter_max_power_kw: float | None = Field(default=None, gt=0)


class TankHeater(Strict):
    """What heats a hot-water tank: a resistive element, or a heat pump whose COP follows the air it
    takes its heat from."""

    kind: Literal["resistive", "heat_pump"] = "resistive"
    # The element's power, or the heat pump's compressor input.
    electric_power_kw: float = Field(gt=0, le=100)
    # A heat pump's COP heating the tank with air at `rated_air_temperature_c` (EN 16147 test); 1 for an element.
    cop: float = Field(default=1.0, gt=0, le=8)
    # EN 16147 rates outdoor-air units at 7 °C, ambient-air units at 15 or 20 °C.
    rated_air_temperature_c: float = Field(default=7.0, ge=-30, le=40)
    # Where a heat pump takes its heat: the tank's room (`ambient_temperature_c`) or outdoor air.
    air: Literal["indoor", "outdoor"] = "indoor"

    @model_validator(mode="after")
    def _cop_for_kind(self) -> TankHeater:
        if self.kind == "resistive" and self.cop != 1.0:
            raise ValueError("a resistive element turns each kWh into one kWh of heat: cop must be 1")
        if self.kind == "heat_pump" and self.cop <= 1.0:
            raise ValueError("a heat pump's cop must be above 1")
        return self


class Legionella(Strict):
    """The disinfection rule: the whole tank at `temperature_c` at least once every `period_days`."""

    temperature_c: float = Field(default=60.0, ge=50, le=80)
    period_days: float = Field(default=7.0, gt=0, le=31)


class DrawProfile(Strict):
    """The hot water a household is expected to use before gridctl has learnt it from the tank's history:
    litres at 40 °C a day, spread over the local hours by a weekday and a weekend shape (24 weights each;
    a morning and an evening peak when not given)."""

    daily_l_40c: float = Field(gt=0, le=5000)
    weekday_shape: list[Annotated[float, Field(ge=0)]] | None = Field(default=None, min_length=24, max_length=24)
    weekend_shape: list[Annotated[float, Field(ge=0)]] | None = Field(default=None, min_length=24, max_length=24)

    @field_validator("weekday_shape", "weekend_shape")
    @classmethod
    def _some_use(cls, shape: list[float] | None) -> list[float] | None:
        if shape is not None and sum(shape) <= 0:
            raise ValueError("a shape needs at least one hour of use")
        return shape


class HotWaterTank(AssetBase):
    """A domestic hot-water tank (electric water heater or heat-pump water heater)."""

    type: Literal["hot_water_tank"]
    volume_l: float = Field(gt=0, le=10_000)
    heater: TankHeater
    # Heat lost per kelvin between the tank and its room (EU 812/2013 labels give it at 45 K: S/45).
    standing_loss_w_per_k: float = Field(gt=0, le=200)
    ambient_temperature_c: float = Field(default=20.0, ge=-20, le=40)
    cold_water_temperature_c: float = Field(default=12.0, ge=0, le=30)
    # Hot water available: the tank's mean temperature gridctl keeps at or above.
    min_temperature_c: float = Field(default=45.0, ge=20, le=80)
    # Its own thermostat's cut-off, the most gridctl heats it to.
    max_temperature_c: float = Field(default=65.0, ge=30, le=95)
    legionella: Legionella = Field(default_factory=Legionella)
    draws: DrawProfile
    # When the off-peak contactor lets the heater run (safe default and baseline); the tariff's off-peak
    # windows when not given.
    contactor_windows: list[TimeWindow] | None = None

    @model_validator(mode="after")
    def _temperatures_ordered(self) -> HotWaterTank:
        if not self.cold_water_temperature_c < self.min_temperature_c < self.max_temperature_c:
            raise ValueError("temperatures must be ordered: cold_water_temperature_c < min_temperature_c < "
                             "max_temperature_c")
        if not self.min_temperature_c < self.legionella.temperature_c <= self.max_temperature_c:
            raise ValueError("legionella.temperature_c must be above min_temperature_c and at most "
                             "max_temperature_c (the thermostat must let the tank reach it)")
        return self


Asset = Annotated[
    BatteryAsset
    | EvChargerPool
    | ThermalZone
    | DeferrableAppliance
    | LightingZone
    | PublicLightingCircuit
    | PvArray
    | HotWaterTank,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- site


class Location(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    elevation_m: float = 0.0


class GridConnection(Strict):
    import_limit_kw: float = Field(gt=0)
    export_limit_kw: float = Field(ge=0)
    subscribed_power_kw: float = Field(gt=0)
    # Points of the main (smart-grid) meter: power, import_energy, export_energy.
    points: dict[str, Address] = Field(default_factory=dict)


class Tariff(Strict):
    kind: Literal["base", "hp_hc", "tempo", "spot"]
    base_price_eur_per_kwh: float | None = Field(default=None, ge=0)
    peak_price_eur_per_kwh: float | None = Field(default=None, ge=0)
    offpeak_price_eur_per_kwh: float | None = Field(default=None, ge=0)
    offpeak_windows: list[TimeWindow] = Field(default_factory=list)
    # Tempo: colour -> {"offpeak": price, "peak": price}.
    tempo_prices_eur_per_kwh: dict[Literal["blue", "white", "red"], dict[Literal["offpeak", "peak"], float]] = (
        Field(default_factory=dict)
    )
    export_price_eur_per_kwh: float = Field(default=0.0, ge=-1)
    overshoot_penalty_eur_per_hour: float = Field(default=12.41, ge=0)

    @model_validator(mode="after")
    def _prices_for_kind(self) -> Tariff:
        need = {
            "base": ["base_price_eur_per_kwh"],
            "hp_hc": ["peak_price_eur_per_kwh", "offpeak_price_eur_per_kwh"],
            "tempo": ["tempo_prices_eur_per_kwh"],
            "spot": [],
        }[self.kind]
        missing = [f for f in need if not getattr(self, f)]
        if missing:
            raise ValueError(f"a {self.kind} tariff needs {', '.join(missing)}")
        if self.kind in ("hp_hc", "tempo") and not self.offpeak_windows:
            raise ValueError(f"a {self.kind} tariff needs offpeak_windows")
        return self


class WeatherProvider(Strict):
    """A public weather forecast API in Open-Meteo's format (`<url>?latitude=..&longitude=..&hourly=...`)."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s?#]+$")]
    # Longest a request may take; a provider that does not answer in time counts as down.
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    # How often a new forecast is fetched; in between the last one is used.
    refresh_min: float = Field(default=60.0, ge=1, le=1440)
    # Longest a forecast is used while the provider is down, before the service forecasts on its own.
    max_age_h: float = Field(default=12.0, gt=0, le=72)


class Building(Strict):
    id: Identifier
    name: str | None = None
    use: Literal["residential", "school", "gym", "office", "parking", "mixed", "technical"]
    floor_area_m2: float | None = Field(default=None, gt=0)


class Dwelling(Strict):
    id: Identifier
    building: Identifier
    floor_area_m2: float = Field(gt=0)
    # The dwelling's own energy counter.
    meter: Address


class Site(Strict):
    id: Identifier
    name: str
    timezone: str
    location: Location
    grid: GridConnection
    tariff: Tariff
    buildings: list[Building] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    bacnet: BacnetSettings = Field(default_factory=BacnetSettings)
    assets: list[Asset] = Field(default_factory=list)
    dwellings: list[Dwelling] = Field(default_factory=list)
    # Where the site's weather forecasts come from; without it the service forecasts from its own measurements.
    weather: WeatherProvider | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}") from None
        return name

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def device(self, device_id: str) -> ModbusDevice | BacnetDevice | OpcuaDevice:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(device_id)

    def point(self, address: str) -> Point:
        device_id, _, point_id = address.partition("/")
        for point in self.device(device_id).points:
            if point.id == point_id:
                return point
        raise KeyError(address)

    def all_points(self) -> list[tuple[str, Any, Point]]:
        """Every (address, device, point) of the site, in file order."""
        return [(f"{d.id}/{p.id}", d, p) for d in self.devices for p in d.points]


ADDRESS_RE = re.compile(ADDRESS_PATTERN)
