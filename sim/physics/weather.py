"""Synthetic Lille weather: seasonal and daily temperature cycles, clear-sky sun times a seeded cloud index.

Defaults follow Lille (50.63 N, 3.06 E): mean air temperature ~11.3 °C, coldest mid-January. Sun
position and Ineichen clear-sky irradiance (with pvlib's Linke turbidity climatology) are computed
by pvlib a day at a time at five-minute resolution and interpolated. The clear-sky index is drawn per
day (how cloudy) and per hour (passing clouds) and interpolated, its mean set so the yearly global
irradiance lands near Lille's ~1,050 kWh/m² instead of the clear-sky bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import pandas as pd
import pvlib

from sim.physics import noise
from sim.physics.solar import SolarPosition, plane_of_array_w_per_m2

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Sun and clear sky are tabulated every few minutes and interpolated: smooth enough, and cheap.
_TABLE_STEP_MIN = 5
_TABLE_POINTS = 24 * 60 // _TABLE_STEP_MIN
# Luminous efficacy of daylight, lm per W of global irradiance.
DAYLIGHT_EFFICACY_LM_PER_W = 110.0
# Below this global irradiance a photocell reads "dark" (sun a few degrees under a clear horizon).
DARK_THRESHOLD_W_PER_M2 = 20.0
# Seasonal swing of the mean clear-sky index: skies over Lille are cloudier in winter than in summer
# (an estimate, sim/PLANT.md), around the yearly mean given to `Weather`.
SEASONAL_INDEX_SWING = 0.08


@dataclass(frozen=True, slots=True)
class WeatherSample:
    ts: datetime
    temperature_c: float
    ghi_w_per_m2: float
    clear_sky_index: float
    sun: SolarPosition
    extraterrestrial_w_per_m2: float

    def plane_of_array_w_per_m2(self, tilt_deg: float, azimuth_deg: float) -> float:
        return plane_of_array_w_per_m2(self.ghi_w_per_m2, self.sun, self.extraterrestrial_w_per_m2,
                                       tilt_deg, azimuth_deg)

    @property
    def outdoor_illuminance_lx(self) -> float:
        return self.ghi_w_per_m2 * DAYLIGHT_EFFICACY_LM_PER_W

    @property
    def dark(self) -> bool:
        return self.ghi_w_per_m2 < DARK_THRESHOLD_W_PER_M2


class Weather:
    """Weather at one place, a pure function of (seed, instant)."""

    def __init__(self, latitude_deg: float = 50.63, longitude_deg: float = 3.06, seed: int = 0, *,
                 elevation_m: float = 20.0, mean_temperature_c: float = 11.3, seasonal_amplitude_k: float = 7.2,
                 daily_amplitude_k: float = 3.5, mean_clear_sky_index: float = 0.64) -> None:
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.seed = seed
        self.mean_temperature_c = mean_temperature_c
        self.seasonal_amplitude_k = seasonal_amplitude_k
        self.daily_amplitude_k = daily_amplitude_k
        self.mean_clear_sky_index = mean_clear_sky_index
        self._location = pvlib.location.Location(latitude_deg, longitude_deg, altitude=elevation_m)
        # Today, tomorrow (forecasts) and yesterday (long steps across midnight) are all that is ever asked.
        self._day_tables = lru_cache(maxsize=4)(self._compute_day)
        self._linke = lru_cache(maxsize=2)(self._compute_linke)

    def _compute_linke(self, year: int) -> dict[date, float]:
        days = pd.date_range(datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, tzinfo=UTC), freq="D")
        values = pvlib.clearsky.lookup_linke_turbidity(days, self.latitude_deg, self.longitude_deg)
        return {day.date(): float(value) for day, value in values.items()}

    def _compute_day(self, day: date) -> tuple[list[float], list[float], list[float], list[float]]:
        """Apparent zenith, azimuth, clear-sky GHI and extraterrestrial irradiance every `_TABLE_STEP_MIN`
        minutes from 00:00 UTC to 00:00 the next day."""
        times = pd.date_range(datetime.combine(day, datetime.min.time(), tzinfo=UTC), periods=_TABLE_POINTS + 1,
                              freq=f"{_TABLE_STEP_MIN}min")
        sun = self._location.get_solarposition(times)
        clear = self._location.get_clearsky(times, model="ineichen", solar_position=sun,
                                            linke_turbidity=self._linke(day.year)[day])
        extra = pvlib.irradiance.get_extra_radiation(times)
        return (sun["apparent_zenith"].tolist(), sun["azimuth"].tolist(), clear["ghi"].fillna(0.0).tolist(),
                list(extra))

    def sample(self, ts: datetime) -> WeatherSample:
        ts = ts.astimezone(UTC)
        zenith, azimuth, clear_ghi, extra = self._day_tables(ts.date())
        position = (ts - datetime.combine(ts.date(), datetime.min.time(), tzinfo=UTC)) / timedelta(
            minutes=_TABLE_STEP_MIN)
        i = min(int(position), _TABLE_POINTS - 1)
        f = position - i

        def at(values: list[float]) -> float:
            return (1.0 - f) * values[i] + f * values[i + 1]

        # Azimuth wraps at north, where the sun is below the horizon at Lille's latitude: take the nearer value.
        sun_azimuth = azimuth[i] if abs(azimuth[i + 1] - azimuth[i]) > 180.0 else at(azimuth)
        index = self.clear_sky_index(ts)
        return WeatherSample(
            ts=ts,
            temperature_c=self.temperature_c(ts),
            ghi_w_per_m2=max(at(clear_ghi), 0.0) * index,
            clear_sky_index=index,
            sun=SolarPosition(at(zenith), sun_azimuth),
            extraterrestrial_w_per_m2=at(extra),
        )

    # ------------------------------------------------------------------ clouds

    def _day_cloudiness(self, day: int) -> float:
        # Clearest in early July (day of year ~187), cloudiest in early January.
        year_fraction = (day % 365.25) / 365.25  # day 0 is 1 January 2000
        seasonal = SEASONAL_INDEX_SWING * math.cos(2.0 * math.pi * (year_fraction - 187.0 / 365.25))
        value = self.mean_clear_sky_index + seasonal + 0.25 * noise.normal(self.seed, "cloud-day", day)
        return min(1.0, max(0.12, value))

    def _hour_knot(self, hour: int) -> float:
        day = hour // 24
        value = self._day_cloudiness(day) + 0.15 * noise.normal(self.seed, "cloud-hour", hour)
        return min(1.0, max(0.08, value))

    def clear_sky_index(self, ts: datetime) -> float:
        hours = (ts - _EPOCH).total_seconds() / 3600.0
        hour = math.floor(hours)
        fraction = hours - hour
        return (1.0 - fraction) * self._hour_knot(hour) + fraction * self._hour_knot(hour + 1)

    # ------------------------------------------------------------------ temperature

    def _day_anomaly_k(self, day: int) -> float:
        return 2.5 * noise.normal(self.seed, "temperature-day", day)

    def temperature_c(self, ts: datetime) -> float:
        days = (ts - _EPOCH).total_seconds() / 86400.0
        year_fraction = (ts.timetuple().tm_yday - 1 + (ts.hour + ts.minute / 60.0) / 24.0) / 365.25
        # Coldest around 15 January.
        seasonal = -self.seasonal_amplitude_k * math.cos(2.0 * math.pi * (year_fraction - 14.0 / 365.25))
        # Day-to-day anomalies interpolated between solar noons, so the curve has no jumps.
        day_position = days + self.longitude_deg / 360.0 - 0.5
        day = math.floor(day_position)
        fraction = day_position - day
        anomaly = (1.0 - fraction) * self._day_anomaly_k(day) + fraction * self._day_anomaly_k(day + 1)
        # Cloudy days have a smaller daily swing; the maximum comes mid-afternoon (solar time).
        solar_hour = (ts.hour + ts.minute / 60.0 + self.longitude_deg / 15.0) % 24.0
        swing = self.daily_amplitude_k * (0.5 + 0.8 * self._day_cloudiness(math.floor(days)))
        daily = swing * math.cos(2.0 * math.pi * (solar_hour - 15.0) / 24.0)
        return self.mean_temperature_c + seasonal + anomaly + daily
