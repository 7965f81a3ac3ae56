"""A weather service's forecast (numerical weather prediction), when the site has one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


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
