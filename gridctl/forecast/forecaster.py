"""The site forecaster: what the service can know ahead from its measurements, calendars and the sun.

Site-wide signals (load, sky, temperature, prices, carbon, darkness) are forecast here; each asset's
own part (PV output, daylight, EV sessions, its thermal model, ...) by its adapter's forecast model
(`gridctl.assets`), which this forecaster feeds.

What it learns from are quarter-hour means of fresh, good readings (a stale or bad reading, or one
already counted, adds nothing), whatever the cadence of the control cycle, kept by age
(`history_days`); stored history (`warm_up`) arrives as the same quarter-hour means. Its public entry
points, for the service, the simulation and a backtest alike: `observe` (every cycle), `warm_up`
(history, oldest first), `forecast` (a horizon), and `report` (its accuracy and what it identified).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gridctl.assets import AssetAdapter, ForecastContext, ForecastModel, ObservationBatch, site_adapters
from gridctl.assets.base import MIN_CLEAR_SKY_W_M2, Number
from gridctl.config import models as m
from gridctl.forecast.accuracy import QUARTER, ForecastAccuracy, quarter_of
from gridctl.forecast.carbon import carbon_intensity
from gridctl.forecast.forecasts import Forecasts
from gridctl.forecast.load import LoadHistory
from gridctl.forecast.prices import tariff_prices
from gridctl.forecast.sky import MAX_INDEX, MIN_INDEX, CloudIndexHistory
from gridctl.forecast.sun import DARK_BELOW_ELEVATION_DEG, solar
from gridctl.forecast.weather import WeatherService, persisted_temperature
from gridctl.threads import in_daemon_thread

if TYPE_CHECKING:
    from gridctl.service.snapshot import Snapshot

__all__ = ["HISTORY_DAYS", "ForecastReport", "SignalForecaster", "base_load_kw", "controlled_power_kw",
           "observed_points"]

log = logging.getLogger(__name__)
# How far back the forecasts learn: two weeks of each weekday for the load profile.
HISTORY_DAYS = 14
# Observations are learnt from in batches of at most this many quarter-hours.
MAX_PENDING = 96


def controlled_power_kw(site: m.Site, number: Number) -> float:
    """Power of everything gridctl schedules (battery charging positive, PV negative)."""
    return sum(adapter.power_kw(number) for adapter in site_adapters(site))


def base_load_kw(site: m.Site, number: Number, adapters: Sequence[AssetAdapter] | None = None) -> float | None:
    """The site's load that gridctl does not schedule: grid power minus what it schedules; None when the
    grid power or any scheduled asset's power is unknown (a missing one would count as load)."""
    address = site.grid.points.get("power")
    grid = number(address) if address else None
    if grid is None:
        return None
    adapters = site_adapters(site) if adapters is None else adapters
    if any(number(point) is None for adapter in adapters for point in adapter.power_points()):
        return None
    return max(0.0, grid - sum(adapter.power_kw(number) for adapter in adapters))


def observed_points(site: m.Site) -> list[str]:
    """Every point the forecaster learns from, for warming it up from stored history."""
    wanted = {site.grid.points["power"]} if "power" in site.grid.points else set()
    for adapter in site_adapters(site):
        wanted |= adapter.observed_points() | set(adapter.power_points())
    for address in (outdoor_temperature_point(site), irradiance_point(site)):
        if address:
            wanted.add(address)
    return sorted(wanted)


def outdoor_temperature_point(site: m.Site) -> str | None:
    for address, _device, point in site.all_points():
        if address.endswith("/outdoor-temperature") and point.unit == "°C":
            return address
    return None


def irradiance_point(site: m.Site) -> str | None:
    """The irradiance sensor the sky is read from: the first an asset names."""
    return next((p for p in (a.irradiance_point() for a in site_adapters(site)) if p), None)


def last_value_points(site: m.Site, addresses: Iterable[str]) -> set[str]:
    """Points whose quarter-hour value is their last reading, not their mean: states and counters."""
    out = set()
    for address in addresses:
        try:
            kind = site.point(address).kind
        except KeyError:
            continue
        if kind in ("state", "energy_counter"):
            out.add(address)
    return out


@dataclass(frozen=True, slots=True)
class _Observation:
    """One quarter-hour of what the site measured, at its middle, for the models to learn from in batches."""

    ts: datetime
    irradiance_w_m2: float | None
    temperature_c: float | None
    base_load_kw: float | None
    # What each asset's forecast model recorded (by asset id).
    samples: dict[str, Any]


class _Quarter:
    """Readings of one quarter-hour: the mean of each measurement, the last value of each state or counter."""

    def __init__(self, start: datetime, last_value: set[str]) -> None:
        self.start = start
        self.last_value = last_value
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float]) -> None:
        for address, value in values.items():
            if address in self.last_value:
                self.sums[address], self.counts[address] = value, 1
            else:
                self.sums[address] = self.sums.get(address, 0.0) + value
                self.counts[address] = self.counts.get(address, 0) + 1

    def number(self, address: str) -> float | None:
        count = self.counts.get(address)
        return self.sums[address] / count if count else None


@dataclass
class _SiteState:
    """What the forecaster holds of one site."""

    site: m.Site
    adapters: list[AssetAdapter]
    points: list[str]
    last_value: set[str]
    load: LoadHistory
    cloud: CloudIndexHistory
    models: dict[str, ForecastModel]
    accuracy: ForecastAccuracy = field(default_factory=ForecastAccuracy)
    quarter: _Quarter | None = None
    # Start of the last quarter-hour learnt from: a later reading of it comes too late.
    closed: datetime | None = None
    # The time stamp of the last reading counted, per point: the same reading counts once.
    counted: dict[str, datetime] = field(default_factory=dict)
    pending: list[_Observation] = field(default_factory=list)
    # Assets whose forecast includes PV output (their measurements score the PV forecast).
    pv_assets: set[str] = field(default_factory=set)
    # What the asset models identified of their plant, as of the last forecast.
    identified: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ForecastReport:
    """How well the forecasts did and what the forecaster identified, for managers and `/metrics`."""

    accuracy: ForecastAccuracy
    # Per asset, what its model identified of its plant as of the last forecast (for a thermal zone,
    # the model its plans rest on: `gridctl.forecast.identify.ThermalEstimate`).
    identified: dict[str, Any]
    history_span: timedelta


class SignalForecaster:
    """Forecasts from the service's own measurements. Load: weekday × time-of-day profile of the
    recent weeks, corrected to the current level. Sun: clear sky × a clear-sky index forecast
    (`gridctl.forecast.sky`), read from an irradiance sensor or else from an asset's output.
    A weather service's forecast, when given, sets the sky and the temperature past the first hour.
    Outdoor temperature otherwise: persistence with a daily swing. Prices: the tariff calendar.
    Each asset's own part (PV output, daylight, EV sessions, thermal model): its adapter's forecast model."""

    def __init__(self, history_days: int = HISTORY_DAYS, tempo_colours: dict[str, str] | None = None,
                 spot_eur_per_kwh: Callable[[Sequence[datetime]], list[float]] | None = None,
                 weather_service: WeatherService | None = None, learn_in_background: bool = False) -> None:
        self.weather_service = weather_service
        # The service does its periodic learning (a daily refit) beside the forecasts, which use the last
        # result meanwhile; a simulation or a backtest waits for it, so that a run is reproducible.
        self.learn_in_background = learn_in_background
        self._learning: dict[str, asyncio.Future[None]] = {}
        self.tempo_colours = tempo_colours or {}
        self.spot = spot_eur_per_kwh
        self.history_days = history_days
        self._sites: dict[str, _SiteState] = {}

    def _state(self, site: m.Site) -> _SiteState:
        state = self._sites.get(site.id)
        if state is None:
            adapters = site_adapters(site)
            made = ((adapter.id, adapter.forecast_model(self.history_days)) for adapter in adapters)
            points = observed_points(site)
            state = self._sites[site.id] = _SiteState(
                site, adapters, points, last_value_points(site, points), LoadHistory(self.history_days),
                CloudIndexHistory(site.tz), {asset_id: model for asset_id, model in made if model is not None})
        return state

    def models(self, site: m.Site) -> dict[str, ForecastModel]:
        """The forecast model of every asset of `site` that has one, by asset id, in the site file's order."""
        return self._state(site).models

    def load_history(self, site: m.Site) -> LoadHistory:
        return self._state(site).load

    # ------------------------------------------------------------------ learning

    def observe(self, site: m.Site, snapshot: Snapshot) -> None:
        """Record what a snapshot shows; called every control cycle. Only fresh, good readings count, each once."""
        state = self._state(site)
        for model in state.models.values():
            model.track(snapshot)
        values: dict[str, float] = {}
        for address in state.points:
            reading = snapshot.readings.get(address)
            if reading is None or not snapshot.is_fresh(address) or isinstance(reading.value, str) \
                    or reading.value is None:
                continue
            seen = state.counted.get(address)
            if seen is not None and reading.ts <= seen:
                continue
            state.counted[address] = reading.ts
            values[address] = float(reading.value)
        self._add(state, snapshot.taken_at, values)

    def warm_up(self, site: m.Site, rows: Iterable[tuple[datetime, Number]]) -> int:
        """Learn from stored history (oldest first), as if each row had been observed; returns rows used.
        A row's reader gives a point's value at that instant (a quarter-hour mean, from the history), or None."""
        state = self._state(site)
        count = 0
        for ts, number in rows:
            values = {a: v for a in state.points if (v := number(a)) is not None}
            self._add(state, ts, values)
            count += 1
        self._close(state)
        self._process(state)
        return count

    def _add(self, state: _SiteState, ts: datetime, values: Mapping[str, float]) -> None:
        start = quarter_of(ts)
        if state.closed is not None and start <= state.closed:
            return
        if state.quarter is not None and start > state.quarter.start:
            self._close(state)
        if state.quarter is None:
            state.quarter = _Quarter(start, state.last_value)
        elif start < state.quarter.start:
            return
        state.quarter.add(values)

    def _close(self, state: _SiteState) -> None:
        """The quarter-hour under way is over: one observation of its means."""
        quarter, state.quarter = state.quarter, None
        if quarter is None:
            return
        state.closed = quarter.start
        site, number = state.site, quarter.number
        middle = quarter.start + QUARTER / 2
        load = base_load_kw(site, number, state.adapters)
        if load is not None:
            state.load.add(middle, load)
            state.accuracy.actual("load", quarter.start, load)
        irradiance = irradiance_point(site)
        temperature = outdoor_temperature_point(site)
        samples = {asset_id: model.sample(number) for asset_id, model in state.models.items()}
        state.pending.append(_Observation(middle, number(irradiance) if irradiance else None,
                                          number(temperature) if temperature else None, load, samples))
        # A service that observes without forecasting (optimiser down, baseline) must not pile them up.
        if len(state.pending) >= MAX_PENDING:
            self._process(state)

    def _process(self, state: _SiteState) -> None:
        """Turn pending observations into clear-sky index samples, and hand them to the asset models."""
        pending, state.pending = state.pending, []
        if not pending:
            return
        site, models = state.site, state.models
        moments = [o.ts for o in pending]
        ghi_clear, _ = solar(site, moments)
        # Observations by night tell nothing of the sky, but the assets' models may still learn from them.
        sunny = [i for i, g in enumerate(ghi_clear) if g >= MIN_CLEAR_SKY_W_M2]
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
            state.cloud.record(moments[i], index[i])
        measured_ghi = {i: ghi_clear[i] * min(max(k, MIN_INDEX), MAX_INDEX) for i, k in index.items()}
        batch = ObservationBatch(moments, temperatures, index, measured_ghi, from_sensor, ghi_clear)
        for asset_id, model in models.items():
            model.learn(batch, [o.samples.get(asset_id) for o in pending])
        self._score_pv(state, pending, sunny)

    def _score_pv(self, state: _SiteState, pending: list[_Observation], sunny: list[int]) -> None:
        """The site's PV output of each daylight quarter-hour where every array told it, against its forecasts."""
        if not state.pv_assets:
            return
        for i in sunny:
            observation = pending[i]
            measured = [state.models[a].measured(observation.samples.get(a)).get("pv_kw") for a in state.pv_assets]
            if all(v is not None for v in measured):
                state.accuracy.actual("pv", quarter_of(observation.ts), sum(v for v in measured if v is not None))

    # ------------------------------------------------------------------ forecasting

    async def forecast(self, site: m.Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts:
        """The forecasts of `n_steps` steps of `step` from `start`, as known at `snapshot.taken_at`."""
        state = self._state(site)
        self.observe(site, snapshot)
        self._process(state)
        now = snapshot.taken_at
        # A daily refit (a zone's thermal identification) takes seconds: off the event loop.
        models = list(state.models.values())
        if not self.learn_in_background:
            await in_daemon_thread(_maintain, site.id, models, now, name=f"refit {site.id}")
        elif site.id not in self._learning or self._learning[site.id].done():
            self._learning[site.id] = asyncio.ensure_future(
                in_daemon_thread(_maintain, site.id, models, now, name=f"refit {site.id}"))
        tz = site.tz
        mids = [start + step * k + step / 2 for k in range(n_steps)]
        ghi_clear, elevation = solar(site, mids)
        published = await self.weather_service.forecast(now, mids) if self.weather_service else None
        published_index = None if published is None else [
            ghi / clear if clear >= MIN_CLEAR_SKY_W_M2 else None
            for ghi, clear in zip(published.ghi_w_m2, ghi_clear, strict=True)]
        cloud = state.cloud.forecast(now, mids, published_index)
        ghi = [g * k for g, k in zip(ghi_clear, cloud, strict=True)]
        if published is not None:
            temperature = published.temperature_c
        else:
            address = outdoor_temperature_point(site)
            temperature = persisted_temperature(now, snapshot.number(address) if address else None, mids, tz)
        ctx = ForecastContext(site, snapshot, start, step, n_steps, mids, cloud, ghi, temperature)
        forecasts = Forecasts(
            start=start, step=step, n_steps=n_steps, base_load_kw=state.load.forecast(mids, tz),
            outdoor_temperature_c=temperature, irradiance_w_m2=ghi,
            import_price_eur_per_kwh=tariff_prices(site.tariff, mids, tz, self.tempo_colours,
                                                   self.spot(mids) if self.spot else None),
            export_price_eur_per_kwh=[site.tariff.export_price_eur_per_kwh] * n_steps,
            carbon_kg_per_kwh=carbon_intensity(mids, tz),
            dark=[e < DARK_BELOW_ELEVATION_DEG for e in elevation],
        )
        for asset_id, model in state.models.items():
            forecasts.add(asset_id, model.forecast(ctx))
        state.pv_assets = set(forecasts.pv_kw)
        state.identified = dict(forecasts.identified)
        state.accuracy.issued("load", now, start, step, forecasts.base_load_kw)
        if forecasts.pv_kw:
            pv = [sum(series[k] for series in forecasts.pv_kw.values()) for k in range(n_steps)]
            state.accuracy.issued("pv", now, start, step, pv)
        return forecasts

    def report(self, site: m.Site) -> ForecastReport:
        state = self._state(site)
        return ForecastReport(state.accuracy, dict(state.identified), state.load.span())


def _maintain(site_id: str, models: list[ForecastModel], now: datetime) -> None:
    for model in models:
        try:
            model.maintain(now)
        except Exception:  # a refit that fails leaves the last model in use; the forecasts go on
            log.exception("%s: periodic learning of a forecast model failed", site_id)
