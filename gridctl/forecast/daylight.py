"""When street lighting is needed: the sun below the horizon, the same rule live and in simulation.

A cabinet's photocell, when the circuit has one, can only add darkness (an overcast dusk); the
planner reads it from the snapshot. Nothing here looks at a simulated sky.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gridctl.config import models as m
from gridctl.service.forecasting import DARK_BELOW_ELEVATION_DEG, solar


def dark_by_sun(site: m.Site) -> Callable[[datetime], bool]:
    """Whether the sun is low enough at the site for street lighting, at a given instant."""

    def is_dark(moment: datetime) -> bool:
        _, (elevation,) = solar(site, [moment])
        return elevation < DARK_BELOW_ELEVATION_DEG

    return is_dark
