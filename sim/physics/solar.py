"""Irradiance on a tilted plane from global horizontal irradiance: Erbs' beam/diffuse split and the
isotropic-sky transposition, in closed form because the simulator evaluates them at every step for
every array (pvlib's vectorised versions cost milliseconds per call)."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
