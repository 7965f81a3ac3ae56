"""What each asset role expects of the point it names: quantity, kind, writability."""

from __future__ import annotations

from dataclasses import dataclass

from gridctl.config.models import PointKind
from gridctl.config.units import Quantity

MEASURED = frozenset({PointKind.MEASUREMENT})
COUNTER = frozenset({PointKind.ENERGY_COUNTER})
SETPOINT = frozenset({PointKind.SETPOINT})
STATE = frozenset({PointKind.STATE})


@dataclass(frozen=True)
class Role:
    quantity: Quantity
    kinds: frozenset[PointKind]
    required: bool = False
    writable: bool = False


ROLES: dict[str, dict[str, Role]] = {
    "battery": {
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "power_setpoint": Role(Quantity.POWER, SETPOINT, required=True, writable=True),
        "soc": Role(Quantity.RATIO, MEASURED, required=True),
        "charged_energy": Role(Quantity.ENERGY, COUNTER),
        "discharged_energy": Role(Quantity.ENERGY, COUNTER),
    },
    "ev_charger": {
        "current_limit": Role(Quantity.CURRENT, SETPOINT, required=True, writable=True),
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "plug_state": Role(Quantity.DIMENSIONLESS, STATE, required=True),
        "session_energy": Role(Quantity.ENERGY, COUNTER),
        "energy": Role(Quantity.ENERGY, COUNTER),
        # The car's or driver's declared needs (ISO 15118 / OCPP 2.0.1 charging needs, a charging app):
        # time left until the announced departure and energy asked for this session, 0 when undeclared.
        "time_to_departure": Role(Quantity.DURATION, MEASURED),
        "energy_request": Role(Quantity.ENERGY, MEASURED),
    },
    "ev_charger_pool": {
        "power": Role(Quantity.POWER, MEASURED),
    },
    "thermal_zone": {
        "temperature": Role(Quantity.TEMPERATURE, MEASURED, required=True),
        "setpoint": Role(Quantity.TEMPERATURE, SETPOINT, required=True, writable=True),
        "heat_pump_power": Role(Quantity.POWER, MEASURED, required=True),
        "occupancy": Role(Quantity.DIMENSIONLESS, STATE),
        "heat_pump_energy": Role(Quantity.ENERGY, COUNTER),
        "mode": Role(Quantity.DIMENSIONLESS, STATE),
    },
    "deferrable_appliance": {
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "start": Role(Quantity.DIMENSIONLESS, STATE, required=True, writable=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
    },
    "lighting_zone": {
        "dimming": Role(Quantity.RATIO, SETPOINT, required=True, writable=True),
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "occupancy": Role(Quantity.DIMENSIONLESS, STATE, required=True),
        "illuminance": Role(Quantity.ILLUMINANCE, MEASURED, required=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
    },
    "public_lighting_circuit": {
        "dimming": Role(Quantity.RATIO, SETPOINT, required=True, writable=True),
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
    },
    "pv": {
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "curtailment_limit": Role(Quantity.RATIO, SETPOINT, writable=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
        "irradiance": Role(Quantity.IRRADIANCE, MEASURED),
    },
    "grid": {
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "import_energy": Role(Quantity.ENERGY, COUNTER, required=True),
        "export_energy": Role(Quantity.ENERGY, COUNTER),
    },
    "dwelling": {
        "meter": Role(Quantity.ENERGY, COUNTER, required=True),
    },
}
