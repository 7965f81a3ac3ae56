"""The weather ahead: a weather provider's forecast (numerical weather prediction) when the site has one
(`gridctl.forecast.openmeteo` reads it), else the outdoor temperature from the last measurement."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

# Without a measurement either: a Lille winter day's mean (°C); and the daily swing around the mean,
# warmest at 15:00 local time.
DEFAULT_TEMPERATURE_C = 8.0
DAILY_SWING_K = 3.0
WARMEST_HOUR = 15.0


@dataclass(frozen=True)
class WeatherForecast:
    """Global horizontal irradiance and air temperature at given instants, as published at `issued_at`."""

    issued_at: datetime
    ghi_w_m2: list[float]
    temperature_c: list[float]


class WeatherService(Protocol):
    async def forecast(self, now: datetime, moments: Sequence[datetime]) -> WeatherForecast | None:
        """The latest forecast published by `now` for `moments`, or None when there is none."""
        ...


def persisted_temperature(now: datetime, now_c: float | None, moments: Sequence[datetime], tz: tzinfo) -> list[float]:
    """Outdoor temperature at `moments` without a provider: the last measurement, carried along a daily swing."""

    def swing(moment: datetime) -> float:
        local = moment.astimezone(tz)
        return DAILY_SWING_K * math.cos(2 * math.pi * (local.hour + local.minute / 60.0 - WARMEST_HOUR) / 24.0)

    offset = (DEFAULT_TEMPERATURE_C if now_c is None else now_c) - swing(now)
    return [offset + swing(t) for t in moments]
