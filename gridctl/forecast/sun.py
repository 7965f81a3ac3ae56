"""The sun at a site: clear-sky irradiance and sun elevation (pvlib, with its turbidity climatology), and
when street lighting is needed.

Darkness is the sun below the horizon, the same rule live and in simulation; a cabinet's photocell,
when the circuit has one, can only add darkness (an overcast dusk), and the planner reads it from the
snapshot. Nothing here looks at a simulated sky.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache

import pandas as pd
import pvlib

from gridctl.config import models as m

# Below this sun elevation street lighting is on (civil twilight is −6°; photocells switch earlier).
DARK_BELOW_ELEVATION_DEG = -3.0


@lru_cache(maxsize=32)
def linke_turbidity(latitude: float, longitude: float) -> tuple[float, ...]:
    """Monthly Linke turbidity of a place, read once from pvlib's climatology (an HDF5 file)."""
    months = pd.DatetimeIndex([f"2020-{month:02d}-15" for month in range(1, 13)], tz="UTC")
    values = pvlib.clearsky.lookup_linke_turbidity(months, latitude, longitude, interp_turbidity=False)
    return tuple(float(v) for v in values)


def solar(site: m.Site, moments: Sequence[datetime]) -> tuple[list[float], list[float]]:
    """Clear-sky global horizontal irradiance (W/m², Ineichen) and sun elevation (°) at each instant."""
    index = pd.DatetimeIndex(list(moments))
    place = site.location
    location = pvlib.location.Location(place.latitude, place.longitude, tz="UTC", altitude=place.elevation_m)
    position = location.get_solarposition(index, method="ephemeris")
    monthly = linke_turbidity(place.latitude, place.longitude)
    turbidity = pd.Series([monthly[t.month - 1] for t in index], index=index)
    clear = location.get_clearsky(index, model="ineichen", solar_position=position, linke_turbidity=turbidity)
    return [max(0.0, float(v)) for v in clear["ghi"]], [float(v) for v in position["apparent_elevation"]]


def dark_by_sun(site: m.Site) -> Callable[[datetime], bool]:
    """Whether the sun is low enough at the site for street lighting, at a given instant."""

    def is_dark(moment: datetime) -> bool:
        _, (elevation,) = solar(site, [moment])
        return elevation < DARK_BELOW_ELEVATION_DEG

    return is_dark
