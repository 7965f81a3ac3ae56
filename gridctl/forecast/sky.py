"""Clear-sky index forecast from the site's own irradiance measurements.

The clear-sky index (measured / clear-sky global irradiance) holds for a while (passing clouds last
tens of minutes), a day has a level of its own (overcast or sunny), and beyond today nothing
measured here says more than the recent climate. So the forecast starts at the last measurement,
relaxes to today's level as estimated so far, and uses the mean of the recent days from tomorrow on.
A weather service's forecast, when the site has one, replaces today's level and the climate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

from gridctl.forecast.recent import Recent

# Mean clear-sky index at Lille over a year (~1,050 kWh/m² measured against the clear-sky bound).
PRIOR_INDEX = 0.70
# How long the last measured index holds before today's level takes over.
PERSISTENCE = timedelta(hours=1)
# Today's level counts as this many hours of daylight already observed at the recent days' level.
PRIOR_WEIGHT_H = 1.0
# Days of climate to keep, and how many days a prior counts against the measured ones.
CLIMATE_DAYS = 14
PRIOR_DAYS = 1.0
MIN_INDEX, MAX_INDEX = 0.05, 1.1


class CloudIndexHistory:
    """Daylight clear-sky index samples of one site and the forecast made from them."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        # Kept by age: the climate is that of the last days, whatever the number of samples a day.
        self._samples = Recent(timedelta(days=CLIMATE_DAYS))

    def record(self, ts: datetime, index: float) -> None:
        self._samples.add(ts, min(max(index, MIN_INDEX), MAX_INDEX))

    def __len__(self) -> int:
        return len(self._samples)

    def latest(self, now: datetime, max_age: timedelta = timedelta(hours=1)) -> float | None:
        last = self._samples.last()
        if last is not None and now - last[0] <= max_age:
            return last[1]
        return None

    def climate(self, before: datetime) -> float:
        """Mean of the daily mean index over the recent days before `before`'s local day."""
        today = before.astimezone(self.tz).date()
        days: dict[object, list[float]] = {}
        for ts, value in self._samples:
            day = ts.astimezone(self.tz).date()
            if day < today:
                days.setdefault(day, []).append(value)
        means = [sum(v) / len(v) for v in days.values()]
        return (sum(means) + PRIOR_DAYS * PRIOR_INDEX) / (len(means) + PRIOR_DAYS)

    def today_level(self, now: datetime) -> float:
        """Today's index so far, weighted by how much of today's daylight was observed."""
        today = now.astimezone(self.tz).date()
        todays = [(ts, v) for ts, v in self._samples if ts.astimezone(self.tz).date() == today and ts <= now]
        climate = self.climate(now)
        if not todays:
            return climate
        observed_h = max((todays[-1][0] - todays[0][0]).total_seconds() / 3600.0, 0.25)
        mean = sum(v for _, v in todays) / len(todays)
        return (observed_h * mean + PRIOR_WEIGHT_H * climate) / (observed_h + PRIOR_WEIGHT_H)

    def forecast(self, now: datetime, moments: Sequence[datetime],
                 weather_service: Sequence[float | None] | None = None) -> list[float]:
        """The expected clear-sky index at each of `moments` (after `now`). `weather_service` is a weather
        service's index at the same moments (None where it says nothing); it replaces today's level and
        the climate, the last measurement still holding for the first hour."""
        today = now.astimezone(self.tz).date()
        climate = self.climate(now)
        level = self.today_level(now)
        last = self.latest(now)
        out = []
        for i, moment in enumerate(moments):
            predicted = weather_service[i] if weather_service is not None else None
            if predicted is not None:
                base = min(max(predicted, MIN_INDEX), MAX_INDEX)
            else:
                base = level if moment.astimezone(self.tz).date() == today else climate
            if last is None or (predicted is None and moment.astimezone(self.tz).date() != today):
                out.append(base)
                continue
            weight = math.exp(-max((moment - now) / PERSISTENCE, 0.0))
            out.append(weight * last + (1.0 - weight) * base)
        return out
