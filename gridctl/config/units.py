"""Units a point may carry, grouped by the physical quantity they measure."""

from __future__ import annotations

from enum import StrEnum


class Quantity(StrEnum):
    POWER = "power"
    ENERGY = "energy"
    TEMPERATURE = "temperature"
    TEMPERATURE_DIFFERENCE = "temperature_difference"
    RATIO = "ratio"
    CURRENT = "current"
    VOLTAGE = "voltage"
    FREQUENCY = "frequency"
    REACTIVE_POWER = "reactive_power"
    APPARENT_POWER = "apparent_power"
    ILLUMINANCE = "illuminance"
    IRRADIANCE = "irradiance"
    CONCENTRATION = "concentration"
    FLOW = "flow"
    VOLUME = "volume"
    PRESSURE = "pressure"
    DURATION = "duration"
    DIMENSIONLESS = "dimensionless"


# Factor to the SI-prefixed unit gridctl uses inside (kW, kWh, °C, %, A, L, ...).
UNITS: dict[str, tuple[Quantity, float]] = {
    "W": (Quantity.POWER, 0.001),
    "kW": (Quantity.POWER, 1.0),
    "MW": (Quantity.POWER, 1000.0),
    "Wh": (Quantity.ENERGY, 0.001),
    "kWh": (Quantity.ENERGY, 1.0),
    "MWh": (Quantity.ENERGY, 1000.0),
    "°C": (Quantity.TEMPERATURE, 1.0),
    "K": (Quantity.TEMPERATURE_DIFFERENCE, 1.0),
    "%": (Quantity.RATIO, 1.0),
    "A": (Quantity.CURRENT, 1.0),
    "V": (Quantity.VOLTAGE, 1.0),
    "Hz": (Quantity.FREQUENCY, 1.0),
    "kvar": (Quantity.REACTIVE_POWER, 1.0),
    "kVA": (Quantity.APPARENT_POWER, 1.0),
    "lx": (Quantity.ILLUMINANCE, 1.0),
    "W/m2": (Quantity.IRRADIANCE, 1.0),
    "ppm": (Quantity.CONCENTRATION, 1.0),
    "m3/h": (Quantity.FLOW, 1.0),
    # Water meters: litres inside.
    "L": (Quantity.VOLUME, 1.0),
    "m3": (Quantity.VOLUME, 1000.0),
    "Pa": (Quantity.PRESSURE, 1.0),
    "bar": (Quantity.PRESSURE, 100_000.0),
    "s": (Quantity.DURATION, 1.0),
    "h": (Quantity.DURATION, 3600.0),
    "": (Quantity.DIMENSIONLESS, 1.0),
}


def quantity_of(unit: str) -> Quantity | None:
    """The quantity a unit measures, or None for a unit gridctl does not know."""
    entry = UNITS.get(unit)
    return entry[0] if entry else None


def to_internal(value: float, unit: str) -> float:
    """Convert a value in `unit` to gridctl's internal unit for its quantity (e.g. W -> kW)."""
    return value * UNITS[unit][1]
