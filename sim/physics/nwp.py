"""A numerical weather prediction of the simulated sky, with the errors real ones have.

Runs start every six hours and are published some hours later, as the national and European
centres do. Each run forecasts the clear-sky index and the air temperature of every hour ahead with
errors that grow with lead time: the irradiance error's size follows published day-ahead GHI
verification (hourly RMSE of about 30–45 % of the mean irradiance in central Europe, sim/PLANT.md),
the temperature's follows 2 m temperature verification (1–2 K, with the daily swing damped as global
models damp it over land). Errors are smooth in time (a whole afternoon too sunny, not one hour) and
seeded per run, so two runs disagree as real ones do.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sim.physics import noise
from sim.physics.weather import Weather

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
RUN_EVERY = timedelta(hours=6)
# A run is published this long after its base time.
PUBLICATION_DELAY = timedelta(hours=4)
# Clear-sky index error (standard deviation) at lead times 0, 24, 48 and 72 h, interpolated between:
# calibrated so hourly GHI RMSE / mean GHI is ~30 % in the first hours, ~38 %, ~42 % and ~46 % on
# days 1, 2 and 3 over a year at Lille (tests/sim/test_nwp.py measures it).
INDEX_ERROR_SD = (0.18, 0.25, 0.29, 0.33)
# Cloudy skies are forecast a little too bright (modelling choice, sim/PLANT.md).
INDEX_BIAS = 0.02
# Air temperature error (standard deviation, K) at the same lead times, and the share of the daily
# swing a global model's 2 m temperature misses over land.
TEMPERATURE_ERROR_SD_K = (0.8, 1.4, 1.7, 2.0)
SWING_DAMPING = 0.2
# Errors change over this many hours (knots interpolated in between).
INDEX_ERROR_HOURS = 3
TEMPERATURE_ERROR_HOURS = 6
MIN_INDEX, MAX_INDEX = 0.05, 1.1


def _by_lead(table: tuple[float, ...], lead_h: float) -> float:
    position = min(max(lead_h, 0.0) / 24.0, len(table) - 1.0)
    i = min(int(position), len(table) - 2)
    f = position - i
    return (1.0 - f) * table[i] + f * table[i + 1]


class NumericalForecast:
    """Forecasts of one simulated place, as a weather service publishes them."""

    def __init__(self, weather: Weather, seed: int) -> None:
        self.weather = weather
        self.seed = seed

    def latest_run(self, now: datetime) -> datetime:
        """Base time of the newest run published by `now`."""
        published = now - PUBLICATION_DELAY
        runs = math.floor((published - _EPOCH) / RUN_EVERY)
        return _EPOCH + RUN_EVERY * runs

    def _smooth(self, run: datetime, kind: str, moment: datetime, hours: int) -> float:
        """A unit-variance error, smooth in time, drawn per run: a daily level plus interpolated knots."""
        run_key = int((run - _EPOCH) / RUN_EVERY)
        position = (moment - _EPOCH).total_seconds() / 3600.0 / hours
        knot = math.floor(position)
        f = position - knot
        local = (1.0 - f) * noise.normal(self.seed, "nwp", kind, run_key, knot) + \
            f * noise.normal(self.seed, "nwp", kind, run_key, knot + 1)
        # Linear interpolation of two independent normals loses variance in between; restore it.
        local /= math.sqrt((1.0 - f) ** 2 + f**2)
        day = math.floor((moment - _EPOCH).total_seconds() / 86400.0)
        return math.sqrt(0.5) * noise.normal(self.seed, "nwp", kind, "day", run_key, day) + math.sqrt(0.5) * local

    def clear_sky_index(self, run: datetime, moment: datetime) -> float:
        lead_h = (moment - run).total_seconds() / 3600.0
        true = self.weather.clear_sky_index(moment)
        error = INDEX_BIAS + _by_lead(INDEX_ERROR_SD, lead_h) * self._smooth(run, "index", moment, INDEX_ERROR_HOURS)
        return min(max(true + error, MIN_INDEX), MAX_INDEX)

    def ghi_w_m2(self, run: datetime, moment: datetime) -> float:
        sample = self.weather.sample(moment)
        clear = sample.ghi_w_per_m2 / sample.clear_sky_index if sample.clear_sky_index > 0 else 0.0
        return clear * self.clear_sky_index(run, moment)

    def ghi_preceding_hour_w_m2(self, run: datetime, end: datetime, samples: int = 6) -> float:
        """Mean forecast global irradiance over the hour ending at `end` (how Open-Meteo reports it)."""
        return sum(self.ghi_w_m2(run, end - timedelta(hours=(k + 0.5) / samples)) for k in range(samples)) / samples

    def temperature_c(self, run: datetime, moment: datetime) -> float:
        lead_h = (moment - run).total_seconds() / 3600.0
        true = self.weather.temperature_c(moment)
        daily_mean = sum(self.weather.temperature_c(moment + timedelta(hours=h)) for h in range(-12, 12, 3)) / 8.0
        damped = true + SWING_DAMPING * (daily_mean - true)
        error = _by_lead(TEMPERATURE_ERROR_SD_K, lead_h) * self._smooth(run, "temperature", moment,
                                                                        TEMPERATURE_ERROR_HOURS)
        return damped + error
