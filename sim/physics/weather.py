"""Synthetic Lille weather: seasonal and daily temperature cycles, clear-sky sun times a seeded cloud index.

Defaults follow Lille (50.63 N, 3.06 E): mean air temperature ~11.3 °C, coldest mid-January. The
clear-sky index is drawn per day (how cloudy) and per hour (passing clouds) and interpolated, with a
mean near 0.6 so the yearly PV yield lands near the ~1,000 kWh/kWp Lille sees instead of the
~1,690 kWh/kWp clear-sky bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sim.physics import noise
from sim.physics.solar import (
    SolarPosition,
    clear_sky_ghi_w_per_m2,
    extraterrestrial_w_per_m2,
    plane_of_array_w_per_m2,
    solar_position,
)

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Luminous efficacy of daylight, lm per W of global irradiance.
DAYLIGHT_EFFICACY_LM_PER_W = 110.0
# Below this global irradiance a photocell reads "dark" (sun a few degrees under a clear horizon).
DARK_THRESHOLD_W_PER_M2 = 20.0


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
                 mean_temperature_c: float = 11.3, seasonal_amplitude_k: float = 7.2,
                 daily_amplitude_k: float = 3.5, mean_clear_sky_index: float = 0.6) -> None:
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.seed = seed
        self.mean_temperature_c = mean_temperature_c
        self.seasonal_amplitude_k = seasonal_amplitude_k
        self.daily_amplitude_k = daily_amplitude_k
        self.mean_clear_sky_index = mean_clear_sky_index

    def sample(self, ts: datetime) -> WeatherSample:
        ts = ts.astimezone(UTC)
        sun = solar_position(ts, self.latitude_deg, self.longitude_deg)
        index = self.clear_sky_index(ts)
        return WeatherSample(
            ts=ts,
            temperature_c=self.temperature_c(ts),
            ghi_w_per_m2=clear_sky_ghi_w_per_m2(sun) * index,
            clear_sky_index=index,
            sun=sun,
            extraterrestrial_w_per_m2=extraterrestrial_w_per_m2(ts),
        )

    # ------------------------------------------------------------------ clouds

    def _day_cloudiness(self, day: int) -> float:
        value = self.mean_clear_sky_index + 0.25 * noise.normal(self.seed, "cloud-day", day)
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
