"""Household electricity profiles and district-heating demand.

A household draws a seeded profile around a weekday/weekend shape with morning and evening peaks,
a winter/summer swing and 15-minute noise, scaled so a typical dwelling uses ~2.5 MWh a year (a new
apartment without electric heating). Heat demand of a substation grows linearly below a balance
temperature, plus domestic hot water.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sim.physics import noise
from sim.physics.energy import EnergyCounter

ANNUAL_ENERGY_KWH = 2500.0
REFERENCE_AREA_M2 = 65.0
SLOT = timedelta(minutes=15)

# Relative demand per local hour (0..23); normalised to a mean of 1 below.
_WEEKDAY = [0.55, 0.45, 0.42, 0.40, 0.40, 0.45, 0.75, 1.35, 1.30, 0.85, 0.75, 0.80,
            0.95, 0.85, 0.75, 0.75, 0.85, 1.10, 1.65, 2.05, 2.00, 1.75, 1.35, 0.85]
_WEEKEND = [0.65, 0.50, 0.45, 0.42, 0.40, 0.42, 0.50, 0.70, 1.05, 1.30, 1.30, 1.35,
            1.45, 1.25, 1.05, 0.95, 1.00, 1.15, 1.55, 1.85, 1.80, 1.55, 1.25, 0.90]


def _normalised(shape: list[float]) -> list[float]:
    mean = sum(shape) / len(shape)
    return [value / mean for value in shape]


WEEKDAY_SHAPE = _normalised(_WEEKDAY)
WEEKEND_SHAPE = _normalised(_WEEKEND)
# Noise is lognormal with mean 1 so it does not shift the yearly energy.
_NOISE_SIGMA = 0.45


@dataclass
class Household:
    dwelling_id: str
    seed: int
    tz: ZoneInfo
    floor_area_m2: float = REFERENCE_AREA_M2
    power_kw: float = 0.0
    energy: EnergyCounter = field(default_factory=EnergyCounter)

    def __post_init__(self) -> None:
        size = 0.6 + 0.4 * self.floor_area_m2 / REFERENCE_AREA_M2
        habits = math.exp(0.2 * noise.normal(self.seed, "household", self.dwelling_id) - 0.02)
        self.mean_power_kw = ANNUAL_ENERGY_KWH / 8766.0 * size * habits

    def demand_kw(self, ts: datetime) -> float:
        local = ts.astimezone(self.tz)
        shape = WEEKEND_SHAPE if local.weekday() >= 5 else WEEKDAY_SHAPE
        hour = local.hour + local.minute / 60.0
        # Interpolate between hourly values centred on the half hour, so the profile is smooth.
        position = (hour - 0.5) % 24.0
        index = int(position)
        fraction = position - index
        base = (1.0 - fraction) * shape[index] + fraction * shape[(index + 1) % 24]
        year_fraction = (local.timetuple().tm_yday - 15) / 365.25
        season = 1.0 + 0.18 * math.cos(2.0 * math.pi * year_fraction)
        slot = int(ts.timestamp() // SLOT.total_seconds())
        jitter = math.exp(_NOISE_SIGMA * noise.normal(self.seed, "load", self.dwelling_id, slot)
                          - _NOISE_SIGMA**2 / 2.0)
        return self.mean_power_kw * base * season * jitter

    def advance(self, start: datetime, duration_s: float) -> float:
        self.power_kw = self.demand_kw(start)
        self.energy.add(self.power_kw, duration_s)
        return self.power_kw


@dataclass
class HeatSubstation:
    """District-heating substation of residential blocks: space heating below the balance temperature
    plus domestic hot water with morning and evening draws."""

    heat_loss_kw_per_k: float = 1.2
    balance_temperature_c: float = 16.0
    hot_water_mean_kw: float = 5.0
    design_heat_power_kw: float = 120.0
    heat_power_kw: float = 0.0
    energy: EnergyCounter = field(default_factory=EnergyCounter)

    def demand_kw(self, local: datetime, outdoor_c: float, supply_c: float) -> float:
        space = self.heat_loss_kw_per_k * max(self.balance_temperature_c - outdoor_c, 0.0)
        # A hotter secondary supply pushes a little more heat into the radiators.
        space *= max(1.0 + 0.015 * (supply_c - 55.0), 0.0)
        hour = local.hour + local.minute / 60.0
        draws = 1.0 + 0.8 * math.exp(-((hour - 7.5) ** 2) / 2.0) + 0.9 * math.exp(-((hour - 20.0) ** 2) / 3.0)
        return min(space + self.hot_water_mean_kw * draws / 1.5, self.design_heat_power_kw)

    def advance(self, local: datetime, duration_s: float, outdoor_c: float, supply_c: float) -> float:
        self.heat_power_kw = self.demand_kw(local, outdoor_c, supply_c)
        self.energy.add(self.heat_power_kw, duration_s)
        return self.heat_power_kw
