"""Domestic hot water: a stratified tank, its heater and thermostat, the mains water, and a household's draws.

The tank has six layers of equal volume (a modelling choice: stirred layers in series are the usual 1-D
model of a stratified store; six keep the tap hot for about two thirds of the tank, as a well stratified
domestic tank does, where two would let it cool after a third). Water leaves at the top and mains water
enters at the bottom; the heater warms the bottom layer, and a layer warmer than the one above turns over
with it. Standing losses leave each layer toward the room, and conduction slowly evens the layers out.

A household draws water at 40 °C (showers, basins, sinks, now and then a bath) as seeded events: how much a
day, when and how fast differ from one household and one day to the next (sim/PLANT.md). At the tap it mixes
hot water with cold to 40 °C: the hotter the tank, the fewer litres it gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sim.physics import noise

WATER_KWH_PER_L_K = 4.1868 / 3600.0
MIXED_C = 40.0
# The hot water a household asks for, in litres at 40 °C per hour: the name of the series the oracle's
# trace records and gridctl's tank adapter reads (gridctl.assets.hot_water_tank.DRAW_SERIES).
DRAW_SERIES = "hot_water_draw_l_per_h"
LAYERS = 6
# Conductance between neighbouring layers (a modelling choice: stratification fades over a day or so).
LAYER_CONDUCTANCE_KW_PER_K = 0.002

# Mains water in northern France: coldest in February (~8 °C), warmest in August (~17 °C) (modelling choice
# after the monthly cold-water temperatures of the French thermal regulation's conventions).
COLD_WATER_MEAN_C = 12.5
COLD_WATER_SWING_K = 4.5
COLDEST_DAY_OF_YEAR = 40


def cold_water_temperature_c(moment: datetime) -> float:
    day = moment.timetuple().tm_yday
    return COLD_WATER_MEAN_C - COLD_WATER_SWING_K * math.cos(2.0 * math.pi * (day - COLDEST_DAY_OF_YEAR) / 365.25)


@dataclass
class StratifiedTank:
    """Layers of equal volume, bottom first: water leaves at the top and mains water enters at the bottom, each
    layer stirred; heat enters the bottom layer, and a layer warmer than the one above turns over with it."""

    volume_l: float
    standing_loss_kw_per_k: float
    layers_c: list[float]

    @classmethod
    def uniform(cls, volume_l: float, standing_loss_kw_per_k: float, mean_c: float, spread_k: float = 0.0,
                layers: int = LAYERS) -> StratifiedTank:
        """A tank at `mean_c`, the top `spread_k` warmer than the bottom."""
        step = spread_k / (layers - 1) if layers > 1 else 0.0
        return cls(volume_l, standing_loss_kw_per_k, [mean_c + step * (k - (layers - 1) / 2) for k in range(layers)])

    @property
    def layer_kwh_per_k(self) -> float:
        return self.volume_l / len(self.layers_c) * WATER_KWH_PER_L_K

    @property
    def mean_c(self) -> float:
        return sum(self.layers_c) / len(self.layers_c)

    @property
    def upper_c(self) -> float:
        return self.layers_c[-1]

    @property
    def lower_c(self) -> float:
        return self.layers_c[0]

    @property
    def coldest_c(self) -> float:
        return min(self.layers_c)

    def draw(self, litres: float, cold_c: float) -> None:
        """Take `litres` from the top at a steady flow, solved exactly: in layer volumes x, the excess over the
        mains of layer k becomes e^(−x) Σ_{j≤k} excess_j x^(k−j)/(k−j)! (stirred layers in series)."""
        if litres <= 0:
            return
        x = litres / (self.volume_l / len(self.layers_c))
        decay = math.exp(-x)
        excess = [t - cold_c for t in self.layers_c]
        terms = [decay * x**n / math.factorial(n) for n in range(len(excess))]
        self.layers_c = [cold_c + sum(excess[j] * terms[k - j] for j in range(k + 1)) for k in range(len(excess))]

    def _turn_over(self) -> None:
        """Mix every layer warmer than the one above it with it, until the tank is colder at the bottom (pooling
        adjacent layers from the bottom up: energy is kept, the result is the only stable one)."""
        groups: list[list[float]] = []  # [sum of temperatures, layers], bottom first
        for temperature in self.layers_c:
            groups.append([temperature, 1.0])
            while len(groups) > 1 and groups[-2][0] / groups[-2][1] > groups[-1][0] / groups[-1][1]:
                total, count = groups.pop()
                groups[-1][0] += total
                groups[-1][1] += count
        self.layers_c = [total / count for total, count in groups for _ in range(int(count))]

    def heat(self, heat_kwh: float) -> None:
        """Heat into the bottom layer; warmer water rises to its level."""
        self.layers_c[0] += heat_kwh / self.layer_kwh_per_k
        self._turn_over()

    def heat_to(self, setting_c: float) -> float:
        """The heat that brings the bottom layer (with the layers it turns over with) to `setting_c`."""
        layers, layer = self.layers_c, self.layer_kwh_per_k
        group, level, needed = 1, layers[0], 0.0
        while level < setting_c:
            above = layers[group] if group < len(layers) else math.inf
            reach = min(setting_c, above)
            needed += (reach - level) * layer * group
            level = reach
            if reach >= setting_c:
                break
            group += 1
        return needed

    def lose(self, seconds: float, ambient_c: float) -> None:
        hours = seconds / 3600.0
        layers = len(self.layers_c)
        to_room = math.exp(-self.standing_loss_kw_per_k / layers / self.layer_kwh_per_k * hours)
        self.layers_c = [ambient_c + (t - ambient_c) * to_room for t in self.layers_c]
        # Conduction between neighbours, pair by pair (the conductance is small: a day or so to even out).
        evened = math.exp(-2.0 * LAYER_CONDUCTANCE_KW_PER_K / self.layer_kwh_per_k * hours)
        for k in range(layers - 1):
            pair = (self.layers_c[k] + self.layers_c[k + 1]) / 2
            self.layers_c[k] = pair + (self.layers_c[k] - pair) * evened
            self.layers_c[k + 1] = pair + (self.layers_c[k + 1] - pair) * evened


@dataclass
class TankHeater:
    """A resistive element (COP 1) or a heat pump: a share of the Carnot COP between its air and the water."""

    electric_power_kw: float
    carnot_share: float | None = None
    # The condenser runs this much above the water it heats.
    approach_k: float = 5.0

    def cop(self, air_c: float, water_c: float) -> float:
        if self.carnot_share is None:
            return 1.0
        hot_c = water_c + self.approach_k
        return min(max(self.carnot_share * (hot_c + 273.15) / max(hot_c - air_c, 5.0), 1.0), 8.0)


@dataclass
class Thermostat:
    """The tank's own thermostat, its probe in the bottom layer beside the heater: it cuts at its setting and
    calls again `differential_k` below."""

    setting_c: float
    differential_k: float
    calling: bool = False

    def update(self, probe_c: float, setting_c: float) -> bool:
        if probe_c >= setting_c:
            self.calling = False
        elif probe_c <= setting_c - self.differential_k:
            self.calling = True
        return self.calling


# --------------------------------------------------------------------------- household draws

# A household's own hourly shapes (relative weights by local hour): they differ on purpose from the
# profile gridctl is given, and each household shifts them by its own routine.
_WEEKDAY = (0.3, 0.1, 0.1, 0.1, 0.3, 1.5, 6.5, 8.5, 5.5, 3.0, 2.0, 2.5,
            3.5, 2.5, 1.5, 1.5, 2.0, 3.5, 5.5, 7.0, 8.5, 8.0, 5.0, 1.5)
_WEEKEND = (1.0, 0.5, 0.2, 0.1, 0.1, 0.2, 0.5, 2.0, 5.0, 8.0, 7.5, 6.0,
            5.0, 3.5, 3.0, 2.5, 3.0, 4.0, 5.5, 7.0, 7.5, 7.0, 4.5, 2.0)
# Showers: the volume at 40 °C (lognormal) and the flow of a shower head (8–9 l/min at 40 °C is usual).
SHOWER_L = 40.0
SHOWER_SIGMA = 0.3
SHOWER_L_PER_MIN = 8.5
# Baths at the weekend now and then.
BATH_L = 120.0
BATH_PROBABILITY = 0.08
BATH_L_PER_MIN = 12.0
# Basins and sinks: small draws.
SMALL_L = 4.0
SMALL_SIGMA = 0.5
SMALL_L_PER_MIN = 5.0
# Share of a day's hot water taken in showers and baths.
BODY_SHARE = 0.7
# Day-to-day spread of a household's total (lognormal), and days away (almost nothing drawn).
DAY_SIGMA = 0.35
AWAY_PROBABILITY = 0.04
AWAY_SHARE = 0.1
# How far a household's routine shifts the shape (normal, hours).
ROUTINE_SHIFT_SD_H = 0.7


@dataclass(frozen=True, slots=True)
class DrawEvent:
    start: datetime
    end: datetime
    l_per_s: float


@dataclass
class HotWaterHousehold:
    """Seeded draw events of one household; `mean_daily_l_40c` is its true habit."""

    key: str
    seed: int
    tz: ZoneInfo
    mean_daily_l_40c: float
    _days: dict[date, list[DrawEvent]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shift_h = ROUTINE_SHIFT_SD_H * max(min(noise.normal(self.seed, "dhw-routine", self.key), 2.5), -2.5)

    def events(self, day: date) -> list[DrawEvent]:
        found = self._days.get(day)
        if found is None:
            if len(self._days) > 64:
                self._days.clear()
            found = self._days[day] = self._draw_day(day)
        return found

    def _draw_day(self, day: date) -> list[DrawEvent]:
        rng = noise.generator(self.seed, "dhw-day", self.key, day.toordinal())
        weekend = day.weekday() >= 5
        total = self.mean_daily_l_40c * math.exp(DAY_SIGMA * rng.gauss(0.0, 1.0) - DAY_SIGMA**2 / 2.0)
        if rng.random() < AWAY_PROBABILITY:
            total *= AWAY_SHARE
        shape = _WEEKEND if weekend else _WEEKDAY
        events: list[DrawEvent] = []

        def at(litres: float, l_per_min: float) -> None:
            hour = rng.choices(range(24), weights=shape)[0] + rng.random() + self.shift_h
            start = datetime.combine(day, datetime.min.time(), self.tz) + timedelta(hours=hour)
            seconds = litres / l_per_min * 60.0
            events.append(DrawEvent(start.astimezone(UTC), start.astimezone(UTC) + timedelta(seconds=seconds),
                                    litres / seconds))

        body = 0.0
        if weekend and rng.random() < BATH_PROBABILITY:
            litres = BATH_L * math.exp(0.2 * rng.gauss(0.0, 1.0))
            at(litres, BATH_L_PER_MIN)
            body += litres
        while body < BODY_SHARE * total:
            litres = min(SHOWER_L * math.exp(SHOWER_SIGMA * rng.gauss(0.0, 1.0)), max(BODY_SHARE * total - body, 5.0))
            at(litres, SHOWER_L_PER_MIN)
            body += litres
        small = 0.0
        while small < total - body:
            litres = min(SMALL_L * math.exp(SMALL_SIGMA * rng.gauss(0.0, 1.0)), max(total - body - small, 0.5))
            at(litres, SMALL_L_PER_MIN)
            small += litres
        return events

    def demand_l_40c(self, start: datetime, end: datetime) -> float:
        """Litres at 40 °C asked for over [start, end)."""
        first = (start.astimezone(self.tz) - timedelta(hours=4)).date()
        last = end.astimezone(self.tz).date() + timedelta(days=1)
        total = 0.0
        day = first
        while day <= last:
            for event in self.events(day):
                overlap = (min(end, event.end) - max(start, event.start)).total_seconds()
                if overlap > 0:
                    total += overlap * event.l_per_s
            day += timedelta(days=1)
        return total


def litres_from_tank(demand_l_40c: float, outlet_c: float, cold_c: float) -> float:
    """Litres leaving the tank for a demand at 40 °C: mixed with cold water at the tap, or all of it when the
    tank is no warmer than 40 °C (a lukewarm shower)."""
    if outlet_c <= MIXED_C:
        return demand_l_40c
    return demand_l_40c * (MIXED_C - cold_c) / (outlet_c - cold_c)
