"""Forecasts from what the service can know at the time: measurements, calendars, clear-sky sun.

Site-wide signals (load, sky, temperature, prices, carbon, darkness) are forecast here; each asset's
own part (PV output, daylight, EV sessions, ...) by its adapter's forecast model (`gridctl.assets`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from gridctl import forecast
from gridctl.assets import ForecastContext, ForecastModel, ObservationBatch, site_adapters
from gridctl.assets.base import MIN_CLEAR_SKY_W_M2, Number
from gridctl.config import models as m
from gridctl.service.calendar import tariff_prices
from gridctl.service.cloud import MAX_INDEX, MIN_INDEX, CloudIndexHistory
from gridctl.service.forecasts import Forecasts
from gridctl.service.snapshot import Snapshot
from gridctl.service.sun import solar
from gridctl.service.weather import WeatherService

__all__ = ["DARK_BELOW_ELEVATION_DEG", "SignalForecaster", "base_load_kw", "carbon_intensity",
           "controlled_power_kw", "observed_points", "solar"]

# Below this sun elevation street lighting is on (civil twilight is −6°; photocells switch earlier).
DARK_BELOW_ELEVATION_DEG = -3.0
# Observations are learnt from in batches of at most this many.
MAX_PENDING = 96


def carbon_intensity(moments: Sequence[datetime], tz) -> list[float]:
    """Grid carbon intensity (kg/kWh) at each instant: the forecast library's daily shape."""
    index = pd.DatetimeIndex(list(moments))
    return [float(v) for v in forecast.carbon_intensity(index, tz=str(tz))]


def controlled_power_kw(site: m.Site, number: Number) -> float:
    """Power of everything gridctl schedules (battery charging positive, PV negative)."""
    return sum(adapter.power_kw(number) for adapter in site_adapters(site))


def base_load_kw(site: m.Site, number: Number) -> float | None:
    """The site's load that gridctl does not schedule: grid power minus what it schedules."""
    address = site.grid.points.get("power")
    grid = number(address) if address else None
    if grid is None:
        return None
    return max(0.0, grid - controlled_power_kw(site, number))


def observed_points(site: m.Site) -> list[str]:
    """Every point `SignalForecaster.observe` reads, for warming it up from stored history."""
    wanted = {site.grid.points["power"]} if "power" in site.grid.points else set()
    for adapter in site_adapters(site):
        wanted |= adapter.observed_points()
    temperature = outdoor_temperature_point(site)
    if temperature:
        wanted.add(temperature)
    return sorted(wanted)


def outdoor_temperature_point(site: m.Site) -> str | None:
    for address, _device, point in site.all_points():
        if address.endswith("/outdoor-temperature") and point.unit == "°C":
            return address
    return None


def irradiance_point(site: m.Site) -> str | None:
    """The irradiance sensor the sky is read from: the first an asset names."""
    return next((p for p in (a.irradiance_point() for a in site_adapters(site)) if p), None)


@dataclass(frozen=True, slots=True)
class _Observation:
    """What one cycle measured that the solar models learn from (processed in batches)."""

    ts: datetime
    irradiance_w_m2: float | None
    temperature_c: float | None
    # What each asset's forecast model recorded (by asset id), for learning in batches.
    samples: dict[str, Any]


class SignalForecaster:
    """Forecasts from the service's own measurements. Load: weekday × time-of-day profile of the
    recent days, corrected to the current level. Sun: clear sky × a clear-sky index forecast
    (`gridctl.service.cloud`), read from an irradiance sensor or else from an asset's output.
    A weather service's forecast, when given, sets the sky and the temperature past the first hour.
    Outdoor temperature otherwise: persistence with a daily swing. Prices: the tariff calendar.
    Each asset's own part (PV output, daylight, EV sessions, ...): its adapter's forecast model."""

    def __init__(self, history_days: int = 8, tempo_colours: dict[str, str] | None = None,
                 spot_eur_per_kwh: Callable[[Sequence[datetime]], list[float]] | None = None,
                 weather_service: WeatherService | None = None) -> None:
        self.weather_service = weather_service
        self.tempo_colours = tempo_colours or {}
        self.spot = spot_eur_per_kwh
        self.history_days = history_days
        self._load: deque[tuple[datetime, float]] = deque(maxlen=history_days * 24 * 12)
        self._cloud: CloudIndexHistory | None = None
        self._pending: list[_Observation] = []
        self._last_observed: datetime | None = None
        # Per site, the forecast model of every asset that has one (made on first use).
        self._models: dict[str, dict[str, ForecastModel]] = {}

    def models(self, site: m.Site) -> dict[str, ForecastModel]:
        """The forecast model of every asset of `site` that has one, by asset id, in the site file's order."""
        models = self._models.get(site.id)
        if models is None:
            made = ((adapter.id, adapter.forecast_model(self.history_days)) for adapter in site_adapters(site))
            models = self._models[site.id] = {asset_id: model for asset_id, model in made if model is not None}
        return models

    def observe(self, site: m.Site, snapshot: Snapshot) -> None:
        """Record what a snapshot shows (called every dispatch cycle)."""
        self._record(site, snapshot.taken_at, snapshot.number)
        for model in self.models(site).values():
            model.track(snapshot)

    def warm_up(self, site: m.Site, rows: Iterable[tuple[datetime, Number]]) -> int:
        """Learn from stored history (oldest first), as if each row had been observed; returns rows used."""
        count = 0
        for ts, number in rows:
            self._record(site, ts, number)
            count += 1
        self._process(site)
        return count

    def _record(self, site: m.Site, ts: datetime, number: Number) -> None:
        if self._last_observed is not None and ts <= self._last_observed:
            return
        self._last_observed = ts
        load = base_load_kw(site, number)
        if load is not None:
            self._load.append((ts, load))
            # The deque's length bounds memory whatever the cycle; age bounds what the profile learns from.
            while self._load and ts - self._load[0][0] > timedelta(days=self.history_days):
                self._load.popleft()
        irradiance = irradiance_point(site)
        temperature = outdoor_temperature_point(site)
        samples = {asset_id: model.sample(number) for asset_id, model in self.models(site).items()}
        self._pending.append(_Observation(ts, number(irradiance) if irradiance else None,
                                          number(temperature) if temperature else None, samples))
        # A service that observes without forecasting (optimiser down, baseline) must not pile them up.
        if len(self._pending) >= MAX_PENDING:
            self._process(site)

    def _process(self, site: m.Site) -> None:
        """Turn pending observations into clear-sky index samples, and hand them to the asset models."""
        if self._cloud is None:
            self._cloud = CloudIndexHistory(site.tz)
        pending, self._pending = self._pending, []
        if not pending:
            return
        moments = [o.ts for o in pending]
        ghi_clear, _ = solar(site, moments)
        # Observations by night tell nothing of the sky, but the assets' models may still learn from them.
        sunny = [i for i, g in enumerate(ghi_clear) if g >= MIN_CLEAR_SKY_W_M2]
        models = self.models(site)
        temperatures = [o.temperature_c for o in pending]
        index: dict[int, float] = {}
        for i in sunny:
            measured = pending[i].irradiance_w_m2
            if measured is not None:
                index[i] = measured / ghi_clear[i]
        from_sensor = bool(index)
        sky_readers = [asset_id for asset_id, model in models.items() if model.reads_sky]
        if not index and sunny and sky_readers:
            # Without an irradiance sensor, the first asset whose output shows the sky tells it.
            reader = sky_readers[0]
            index = models[reader].sky_index(moments, [o.samples.get(reader) for o in pending], sunny, temperatures)
        for i in sorted(index):
            self._cloud.record(moments[i], index[i])
        measured_ghi = {i: ghi_clear[i] * min(max(k, MIN_INDEX), MAX_INDEX) for i, k in index.items()}
        batch = ObservationBatch(moments, temperatures, index, measured_ghi, from_sensor)
        for asset_id, model in models.items():
            model.learn(batch, [o.samples.get(asset_id) for o in pending])

    async def forecast(self, site: m.Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts:
        self.observe(site, snapshot)
        self._process(site)
        assert self._cloud is not None
        tz = site.tz
        now = snapshot.taken_at
        mids = [start + step * k + step / 2 for k in range(n_steps)]
        ghi_clear, elevation = solar(site, mids)
        published = await self.weather_service.forecast(now, mids) if self.weather_service else None
        published_index = None if published is None else [
            ghi / clear if clear >= MIN_CLEAR_SKY_W_M2 else None
            for ghi, clear in zip(published.ghi_w_m2, ghi_clear, strict=True)]
        cloud = self._cloud.forecast(now, mids, published_index)
        ghi = [g * k for g, k in zip(ghi_clear, cloud, strict=True)]
        temperature = published.temperature_c if published else self._temperature(site, snapshot, mids, tz)
        ctx = ForecastContext(site, snapshot, start, step, n_steps, mids, cloud, ghi, temperature)
        forecasts = Forecasts(
            start=start, step=step, n_steps=n_steps, base_load_kw=self._base_load(mids, tz),
            outdoor_temperature_c=temperature, irradiance_w_m2=ghi,
            import_price_eur_per_kwh=tariff_prices(site.tariff, mids, tz, self.tempo_colours,
                                                   self.spot(mids) if self.spot else None),
            export_price_eur_per_kwh=[site.tariff.export_price_eur_per_kwh] * n_steps,
            carbon_kg_per_kwh=carbon_intensity(mids, tz),
            dark=[e < DARK_BELOW_ELEVATION_DEG for e in elevation],
        )
        for asset_id, model in self.models(site).items():
            forecasts.add(asset_id, model.forecast(ctx))
        return forecasts

    def _temperature(self, site: m.Site, snapshot: Snapshot, mids: list[datetime], tz) -> list[float]:
        address = outdoor_temperature_point(site)
        now_c = snapshot.number(address) if address else None
        if now_c is None:
            now_c = 8.0
        def swing(moment: datetime) -> float:
            local = moment.astimezone(tz)
            return 3.0 * math.cos(2 * math.pi * (local.hour + local.minute / 60.0 - 15.0) / 24.0)
        offset = now_c - swing(snapshot.taken_at)
        return [offset + swing(t) for t in mids]

    def _base_load(self, mids: list[datetime], tz) -> list[float]:
        if not self._load:
            return [0.0] * len(mids)
        history = pd.Series([v for _, v in self._load], index=pd.DatetimeIndex([t for t, _ in self._load]))
        step = mids[1] - mids[0] if len(mids) > 1 else timedelta(minutes=15)
        index = pd.DatetimeIndex([t - step / 2 for t in mids])
        # Weekday × time-of-day profile of what was measured, corrected toward the last hours' level.
        predicted = forecast.load_forecast(history, index, weeks=1, recent_hours=3.0, correction_decay_hours=3.0,
                                           tz=str(tz))
        fallback = self._load[-1][1]
        return [fallback if math.isnan(v) else max(float(v), 0.0) for v in predicted]
