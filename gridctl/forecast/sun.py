"""The sun at a site: clear-sky irradiance and sun elevation (pvlib, with its turbidity climatology), and
when street lighting is needed.

Darkness is the sun below the horizon, the same rule live and in simulation; a cabinet's photocell,
when the circuit has one, can only add darkness (an overcast dusk), and the planner reads it from the
snapshot. Nothing here looks at a simulated sky.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
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
    place = site.location
    key = (place.latitude, place.longitude, place.elevation_m)
    with _lock:
        table = _tables.setdefault(key, OrderedDict())
        found = {t: table[t] for t in moments if t in table}
    missing = list(dict.fromkeys(t for t in moments if t not in found))
    if missing:
        computed = _solar(place, missing + _ahead(moments, found))
        found.update(computed)
        with _lock:
            table.update(computed)
            while len(table) > _KEPT_INSTANTS:
                table.popitem(last=False)
    return [found[t][0] for t in moments], [found[t][1] for t in moments]


# The sun's path is a pure function of the place and the instant: what was computed is kept, and a regular
# series is computed as far again ahead, since a receding horizon asks for one new instant per plan and
# pvlib's cost is per call far more than per instant.
_KEPT_INSTANTS = 20_000
_tables: dict[tuple[float, float, float], OrderedDict[datetime, tuple[float, float]]] = {}
_lock = threading.Lock()


def _ahead(moments: Sequence[datetime], known: dict[datetime, tuple[float, float]]) -> list[datetime]:
    if len(moments) < 2:
        return []
    step = moments[1] - moments[0]
    if step <= timedelta(0) or any(b - a != step for a, b in itertools.pairwise(moments)):
        return []
    last = moments[-1]
    return [t for t in (last + step * k for k in range(1, len(moments) + 1)) if t not in known]


def _solar(place: m.Location, moments: list[datetime]) -> dict[datetime, tuple[float, float]]:
    index = pd.DatetimeIndex(moments)
    location = pvlib.location.Location(place.latitude, place.longitude, tz="UTC", altitude=place.elevation_m)
    position = location.get_solarposition(index, method="ephemeris")
    monthly = linke_turbidity(place.latitude, place.longitude)
    turbidity = pd.Series([monthly[t.month - 1] for t in index], index=index)
    clear = location.get_clearsky(index, model="ineichen", solar_position=position, linke_turbidity=turbidity)
    return {t: (max(0.0, float(g)), float(e))
            for t, g, e in zip(moments, clear["ghi"], position["apparent_elevation"], strict=True)}


def dark_by_sun(site: m.Site) -> Callable[[datetime], bool]:
    """Whether the sun is low enough at the site for street lighting, at a given instant."""

    def is_dark(moment: datetime) -> bool:
        _, (elevation,) = solar(site, [moment])
        return elevation < DARK_BELOW_ELEVATION_DEG

    return is_dark
