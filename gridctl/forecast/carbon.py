"""Grid carbon intensity: the daily shape of the French mix (higher at the evening peak, lower at midday)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, tzinfo

# Mean intensity of French grid electricity (gCO2/kWh), and the amplitude of its daily swing.
MEAN_G_PER_KWH = 21.7
DAILY_SWING = 0.35
EVENING_PEAK_HOUR = 19.0


def carbon_intensity(moments: Sequence[datetime], tz: tzinfo) -> list[float]:
    """Carbon intensity (kg/kWh) at each instant, peaking at 19:00 local time."""
    out = []
    for moment in moments:
        local = moment.astimezone(tz)
        hours = local.hour + local.minute / 60.0
        shape = 1.0 + DAILY_SWING * math.cos(2 * math.pi * (hours - EVENING_PEAK_HOUR) / 24.0)
        out.append(MEAN_G_PER_KWH * shape / 1000.0)
    return out
