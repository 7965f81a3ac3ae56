"""The simulated site's weather service: forecasts of the simulated weather, with realistic errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gridctl.service.weather import WeatherForecast
from sim.physics.weather import Weather


class SimulatedWeatherService:
    def __init__(self, weather: Weather) -> None:
        self.weather = weather

    async def forecast(self, now: datetime, moments: Sequence[datetime]) -> WeatherForecast | None:
        ghi, temperature = self.weather.forecast(now, list(moments))
        return WeatherForecast(now, ghi, temperature)
