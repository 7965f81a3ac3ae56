"""Solar geometry, clear-sky irradiance and transposition to a tilted plane, in compact closed forms.

Solar position follows the NOAA general solar position equations (Spencer's Fourier series);
clear-sky global horizontal irradiance is Haurwitz's model; the beam/diffuse split is Erbs';
the plane of array uses the isotropic-sky model. Accurate to a few percent, which is plenty
for a simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

SOLAR_CONSTANT_W_PER_M2 = 1367.0
GROUND_ALBEDO = 0.2


@dataclass(frozen=True, slots=True)
class SolarPosition:
    zenith_deg: float
    azimuth_deg: float  # clockwise from north

    @property
    def elevation_deg(self) -> float:
        return 90.0 - self.zenith_deg

    @property
    def cos_zenith(self) -> float:
        return math.cos(math.radians(self.zenith_deg))


def solar_position(ts: datetime, latitude_deg: float, longitude_deg: float) -> SolarPosition:
    ts = ts.astimezone(UTC)
    day_of_year = ts.timetuple().tm_yday
    hours = ts.hour + ts.minute / 60.0 + (ts.second + ts.microsecond / 1e6) / 3600.0
    gamma = 2.0 * math.pi / 365.0 * (day_of_year - 1 + (hours - 12.0) / 24.0)
    equation_of_time_min = 229.18 * (
        0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma)
    )
    declination = (
        0.006918 - 0.399912 * math.cos(gamma) + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma) + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma) + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_time_min = hours * 60.0 + equation_of_time_min + 4.0 * longitude_deg
    hour_angle = math.radians(true_solar_time_min / 4.0 - 180.0)
    latitude = math.radians(latitude_deg)
    cos_zenith = (math.sin(latitude) * math.sin(declination)
                  + math.cos(latitude) * math.cos(declination) * math.cos(hour_angle))
    zenith = math.acos(max(-1.0, min(1.0, cos_zenith)))
    azimuth = math.degrees(math.atan2(
        math.sin(hour_angle),
        math.cos(hour_angle) * math.sin(latitude) - math.tan(declination) * math.cos(latitude),
    )) + 180.0
    return SolarPosition(math.degrees(zenith), azimuth % 360.0)


def extraterrestrial_w_per_m2(ts: datetime) -> float:
    day_of_year = ts.astimezone(UTC).timetuple().tm_yday
    return SOLAR_CONSTANT_W_PER_M2 * (1.0 + 0.033 * math.cos(2.0 * math.pi * day_of_year / 365.0))


def clear_sky_ghi_w_per_m2(position: SolarPosition) -> float:
    """Haurwitz clear-sky global horizontal irradiance."""
    cos_zenith = position.cos_zenith
    if cos_zenith <= 0.0:
        return 0.0
    return 1098.0 * cos_zenith * math.exp(-0.057 / cos_zenith)


def diffuse_fraction(clearness_index: float) -> float:
    """Erbs et al. (1982) diffuse fraction of global horizontal irradiance."""
    kt = clearness_index
    if kt <= 0.22:
        return 1.0 - 0.09 * kt
    if kt <= 0.80:
        return 0.9511 - 0.1604 * kt + 4.388 * kt**2 - 16.638 * kt**3 + 12.336 * kt**4
    return 0.165


def plane_of_array_w_per_m2(ghi_w_per_m2: float, position: SolarPosition, extraterrestrial: float,
                            tilt_deg: float, azimuth_deg: float) -> float:
    """Irradiance on a plane tilted `tilt_deg` facing `azimuth_deg`: beam + isotropic sky + ground."""
    if ghi_w_per_m2 <= 0.0:
        return 0.0
    # Near the horizon the beam component blows up; a floor on cos(zenith) keeps it finite.
    cos_zenith = max(position.cos_zenith, 0.065)
    clearness = min(ghi_w_per_m2 / (extraterrestrial * cos_zenith), 1.0)
    dhi = diffuse_fraction(clearness) * ghi_w_per_m2
    dni = (ghi_w_per_m2 - dhi) / cos_zenith
    tilt = math.radians(tilt_deg)
    zenith = math.radians(position.zenith_deg)
    cos_incidence = (math.cos(zenith) * math.cos(tilt)
                     + math.sin(zenith) * math.sin(tilt) * math.cos(math.radians(position.azimuth_deg - azimuth_deg)))
    beam = dni * max(cos_incidence, 0.0)
    sky = dhi * (1.0 + math.cos(tilt)) / 2.0
    ground = ghi_w_per_m2 * GROUND_ALBEDO * (1.0 - math.cos(tilt)) / 2.0
    return beam + sky + ground
