"""What a site's instruments really report: sensor errors and communication outages.

Every measurement the physics sets on a simulated device passes through its sensor (a fixed
calibration error within the instrument class, the reading noise and the resolution), so the live
readings served over the protocols and the history a service held before a simulation started come
through the same path. Devices also drop out now and then (a gateway that stops answering for a
while); `Outages` says when, seeded, for the live loop and for the warm-up history alike. Sources and
figures: sim/PLANT.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sim.physics import noise

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# IEC 60751 class B platinum sensors: ±(0.30 + 0.005 |t|) K; the offset is drawn within it.
TEMPERATURE_CLASS_B_K = 0.30
TEMPERATURE_CLASS_B_PER_K = 0.005
TEMPERATURE_NOISE_K = 0.05
TEMPERATURE_RESOLUTION_K = 0.1
# A class C (ISO 9060:2018) pyranometer: a few per cent of calibration error, and reading noise.
IRRADIANCE_GAIN_SD = 0.03
IRRADIANCE_NOISE_W_M2 = 3.0
# Class 1 meters (IEC 62053-21): ±1 % of reading.
POWER_GAIN_SD = 0.005
# Outages of one device's communication: how often and how long (modelling choice, sim/PLANT.md).
OUTAGES_PER_DAY = 0.5
OUTAGE_MEDIAN = timedelta(minutes=15)
OUTAGE_SIGMA = 0.8
OUTAGE_MAX = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class Sensor:
    """One instrument: reading = gain × true + offset + noise, rounded to the resolution."""

    address: str
    seed: int
    gain: float = 1.0
    offset: float = 0.0
    # Extra offset per unit of |true value| (class B temperature tolerance widens with temperature).
    offset_per_unit: float = 0.0
    noise_sd: float = 0.0
    resolution: float = 0.0

    def read(self, true: float, at: datetime) -> float:
        value = self.gain * true + self.offset + self.offset_per_unit * abs(true)
        if self.noise_sd:
            slot = int(at.timestamp() // 60)
            value += self.noise_sd * noise.normal(self.seed, "sensor-noise", self.address, slot)
        if self.resolution:
            value = round(value / self.resolution) * self.resolution
        return value


def _bounded_normal(seed: int, *keys: object) -> float:
    return min(max(noise.normal(seed, *keys), -2.0), 2.0)


def sensor_for(seed: int, address: str, unit: str) -> Sensor | None:
    """The instrument behind a measurement point of this unit, or None for values not measured by a sensor."""
    draw = _bounded_normal(seed, "sensor", address)
    if unit == "°C":
        # Half the class tolerance is one standard deviation; the draw stays within the class.
        return Sensor(address, seed, offset=0.5 * TEMPERATURE_CLASS_B_K * draw,
                      offset_per_unit=0.5 * TEMPERATURE_CLASS_B_PER_K * draw,
                      noise_sd=TEMPERATURE_NOISE_K, resolution=TEMPERATURE_RESOLUTION_K)
    if unit == "W/m2":
        return Sensor(address, seed, gain=1.0 + IRRADIANCE_GAIN_SD * draw, noise_sd=IRRADIANCE_NOISE_W_M2)
    if unit in ("kW", "W"):
        return Sensor(address, seed, gain=1.0 + POWER_GAIN_SD * draw)
    return None


class Outages:
    """When each device's communication is down: a seeded Poisson process of lognormal outages."""

    def __init__(self, seed: int, enabled: bool = True) -> None:
        self.seed = seed
        self.enabled = enabled
        self._days: dict[tuple[str, int], list[tuple[datetime, datetime]]] = {}

    def _day(self, device_id: str, day: int) -> list[tuple[datetime, datetime]]:
        key = (device_id, day)
        if key not in self._days:
            rng = noise.generator(self.seed, "outage", device_id, day)
            midnight = _EPOCH + timedelta(days=day)
            out = []
            count = _poisson(rng.random, OUTAGES_PER_DAY)
            for _ in range(count):
                begin = midnight + timedelta(seconds=rng.uniform(0, 86400))
                length = min(OUTAGE_MEDIAN * math.exp(OUTAGE_SIGMA * rng.gauss(0.0, 1.0)), OUTAGE_MAX)
                out.append((begin, begin + length))
            if len(self._days) > 4096:
                self._days.clear()
            self._days[key] = out
        return self._days[key]

    def down(self, device_id: str, at: datetime) -> bool:
        if not self.enabled:
            return False
        day = math.floor((at - _EPOCH).total_seconds() / 86400.0)
        # An outage starting late yesterday may last past midnight.
        return any(begin <= at < end for d in (day - 1, day) for begin, end in self._day(device_id, d))


def _poisson(uniform, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, count, product = math.exp(-mean), 0, uniform()
    while product > limit:
        count += 1
        product *= uniform()
    return count
