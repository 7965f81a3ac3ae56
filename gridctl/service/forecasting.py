"""Forecasts from what the service can know at the time: measurements, calendars, clear-sky sun."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
import pvlib

from gridctl import forecast
from gridctl.config import models as m
from gridctl.service.calendar import tariff_prices
from gridctl.service.cloud import MAX_INDEX, MIN_INDEX, CloudIndexHistory
from gridctl.service.forecasts import EvSessionForecast, Forecasts
from gridctl.service.snapshot import Snapshot
from gridctl.service.weather import WeatherService

# Indoor daylight at the work plane per W/m² of outdoor global irradiance: ~110 lm/W luminous
# efficacy of daylight × a 2.5 % daylight factor (a well-glazed office).
DAYLIGHT_LUX_PER_W_M2 = 2.75
DAYLIGHT_PRUDENCE = 0.8
# Below this sun elevation street lighting is on (civil twilight is −6°; photocells switch earlier).
DARK_BELOW_ELEVATION_DEG = -3.0
# ElaadNL workplace statistics (reference.md): median plug-in 4.9 h and 8.8 kWh. A driver is not asked
# when they leave, so plan for an early departure (well inside the shortest stays: a car rarely leaves
# within 1.5 h) and a large need (about the ninth decile): the car is served first and only what the
# stay leaves room for is shifted.
WORKPLACE_PLUG_IN = timedelta(hours=1.5)
WORKPLACE_ENERGY_KWH = 19.0
STILL_CHARGING_KWH = 5.0
# Drivers who declare a departure often leave a little before it.
DECLARED_DEPARTURE_MARGIN = timedelta(hours=1)
MIN_PLANNED_STAY = timedelta(minutes=30)
MIN_DECLARED_STAY = timedelta(minutes=15)
# Below this clear-sky irradiance the sky's state can't be read from a sensor.
MIN_CLEAR_SKY_W_M2 = 50.0
# Observations are learnt from in batches of at most this many.
MAX_PENDING = 96


@lru_cache(maxsize=32)
def _linke_turbidity(latitude: float, longitude: float) -> tuple[float, ...]:
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
    monthly = _linke_turbidity(place.latitude, place.longitude)
    turbidity = pd.Series([monthly[t.month - 1] for t in index], index=index)
    clear = location.get_clearsky(index, model="ineichen", solar_position=position, linke_turbidity=turbidity)
    return [max(0.0, float(v)) for v in clear["ghi"]], [float(v) for v in position["apparent_elevation"]]


def carbon_intensity(moments: Sequence[datetime], tz) -> list[float]:
    """Grid carbon intensity (kg/kWh) at each instant: the forecast library's daily shape."""
    index = pd.DatetimeIndex(list(moments))
    return [float(v) for v in forecast.carbon_intensity(index, tz=str(tz))]


Number = Callable[[str], float | None]


def controlled_power_kw(site: m.Site, number: Number) -> float:
    """Power of everything gridctl schedules (battery charging positive, PV negative)."""
    total = 0.0
    for asset in site.assets:
        if isinstance(asset, m.EvChargerPool):
            total += sum(number(c.points["power"]) or 0.0 for c in asset.chargers)
        elif isinstance(asset, m.PvArray):
            total -= number(asset.points["power"]) or 0.0
        elif isinstance(asset, m.ThermalZone):
            total += number(asset.points["heat_pump_power"]) or 0.0
        elif isinstance(asset, m.BatteryAsset | m.LightingZone | m.PublicLightingCircuit | m.DeferrableAppliance):
            value = number(asset.points["power"]) or 0.0
            total += value / 1000.0 if site.point(asset.points["power"]).unit == "W" else value
    return total


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
    roles = {"power", "heat_pump_power", "curtailment_limit", "irradiance", "illuminance", "dimming"}
    for asset in site.assets:
        wanted.update(address for role, address in asset.points.items() if role in roles)
        if isinstance(asset, m.EvChargerPool):
            wanted.update(c.points["power"] for c in asset.chargers)
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
    for asset in site.assets:
        if isinstance(asset, m.PvArray) and "irradiance" in asset.points:
            return asset.points["irradiance"]
    return None


@dataclass(frozen=True, slots=True)
class _Observation:
    """What one cycle measured that the solar models learn from (processed in batches)."""

    ts: datetime
    irradiance_w_m2: float | None
    temperature_c: float | None
    # Measured power of arrays running free (not curtailed, not at their inverter's limit).
    pv_kw: dict[str, float]
    # Per lighting zone: (illuminance lx, dimming %).
    lighting: dict[str, tuple[float, float]]


class SignalForecaster:
    """Forecasts from the service's own measurements. Load: weekday × time-of-day profile of the
    recent days, corrected to the current level. Sun: clear sky × a clear-sky index forecast
    (`gridctl.service.cloud`), transposed onto each array and calibrated on its measured output.
    A weather service's forecast, when given, sets the sky and the temperature past the first hour.
    Outdoor temperature otherwise: persistence with a daily swing. Prices: the tariff calendar. EV sessions:
    what the car or its driver declared through the charger, else a prudent workplace guess."""

    def __init__(self, history_days: int = 8, tempo_colours: dict[str, str] | None = None,
                 spot_eur_per_kwh: Callable[[Sequence[datetime]], list[float]] | None = None,
                 weather_service: WeatherService | None = None) -> None:
        self.weather_service = weather_service
        self.tempo_colours = tempo_colours or {}
        self.spot = spot_eur_per_kwh
        self.history_days = history_days
        self._load: deque[tuple[datetime, float]] = deque(maxlen=history_days * 24 * 12)
        self._plugged_since: dict[str, datetime] = {}
        self._cloud: CloudIndexHistory | None = None
        self._pending: list[_Observation] = []
        self._last_observed: datetime | None = None
        # Per PV array, (measured, modelled) energy over recent daylight samples: the calibration.
        self._pv_fit: dict[str, deque[tuple[float, float]]] = {}
        # Per lighting zone, indoor daylight lux per W/m² outdoors, learnt from its sensor.
        self._daylight_ratio: dict[str, float] = {}

    def observe(self, site: m.Site, snapshot: Snapshot) -> None:
        """Record what a snapshot shows (called every dispatch cycle)."""
        self._record(site, snapshot.taken_at, snapshot.number)
        for asset in site.assets:
            if not isinstance(asset, m.EvChargerPool):
                continue
            for charger in asset.chargers:
                state = snapshot.number(charger.points["plug_state"])
                plugged = state is not None and int(state) in (1, 2, 3)
                if plugged:
                    self._plugged_since.setdefault(charger.id, snapshot.taken_at)
                else:
                    self._plugged_since.pop(charger.id, None)

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
        pv: dict[str, float] = {}
        for array in site.assets:
            if not isinstance(array, m.PvArray):
                continue
            power = number(array.points["power"])
            limit = number(array.points["curtailment_limit"]) if "curtailment_limit" in array.points else None
            at_inverter_limit = array.inverter_max_power_kw is not None and power is not None and \
                power >= 0.98 * array.inverter_max_power_kw
            if power is not None and (limit is None or limit >= 99.0) and not at_inverter_limit:
                pv[array.id] = power
        lighting = {}
        for zone in site.assets:
            if isinstance(zone, m.LightingZone):
                illuminance, dimming = number(zone.points["illuminance"]), number(zone.points["dimming"])
                if illuminance is not None and dimming is not None:
                    lighting[zone.id] = (illuminance, dimming)
        self._pending.append(_Observation(ts, number(irradiance) if irradiance else None,
                                          number(temperature) if temperature else None, pv, lighting))
        # A service that observes without forecasting (optimiser down, baseline) must not pile them up.
        if len(self._pending) >= MAX_PENDING:
            self._process(site)

    def _process(self, site: m.Site) -> None:
        """Turn pending observations into clear-sky index, PV calibration and daylight samples."""
        if self._cloud is None:
            self._cloud = CloudIndexHistory(site.tz)
        pending, self._pending = self._pending, []
        if not pending:
            return
        moments = [o.ts for o in pending]
        ghi_clear, _ = solar(site, moments)
        arrays = [a for a in site.assets if isinstance(a, m.PvArray)]
        sunny = [i for i, g in enumerate(ghi_clear) if g >= MIN_CLEAR_SKY_W_M2]
        if not sunny:
            return
        index: dict[int, float] = {}
        for i in sunny:
            measured = pending[i].irradiance_w_m2
            if measured is not None:
                index[i] = measured / ghi_clear[i]
        if not index and arrays:
            # Without an irradiance sensor, the first free-running array tells the sky.
            array = arrays[0]
            usable = [i for i in sunny if array.id in pending[i].pv_kw]
            clear_kw = [] if not usable else self._pv_model(site, array, [moments[i] for i in usable], None,
                                      [pending[i].temperature_c for i in usable])
            for i, modelled in zip(usable, clear_kw, strict=True):
                if modelled > 0.02 * array.peak_power_kwp:
                    index[i] = pending[i].pv_kw[array.id] / modelled
        for i in sorted(index):
            self._cloud.record(moments[i], index[i])
        measured_ghi = {i: ghi_clear[i] * min(max(k, MIN_INDEX), MAX_INDEX) for i, k in index.items()}
        if arrays and any(pending[i].irradiance_w_m2 is not None for i in index):
            self._calibrate_pv(site, arrays, pending, index)
        zones = {a.id: a for a in site.assets if isinstance(a, m.LightingZone)}
        for i, ghi in measured_ghi.items():
            if ghi < MIN_CLEAR_SKY_W_M2:
                continue
            for zone_id, (illuminance, dimming) in pending[i].lighting.items():
                zone = zones[zone_id]
                daylight = max(illuminance - dimming / 100.0 * zone.rated_illuminance_lx, 0.0)
                sample = daylight / ghi
                previous = self._daylight_ratio.get(zone_id)
                self._daylight_ratio[zone_id] = sample if previous is None else 0.8 * previous + 0.2 * sample

    def _calibrate_pv(self, site: m.Site, arrays: list[m.PvArray], pending: list[_Observation],
                      index: dict[int, float]) -> None:
        for array in arrays:
            usable = [i for i in sorted(index) if array.id in pending[i].pv_kw]
            if not usable:
                continue
            modelled = self._pv_model(site, array, [pending[i].ts for i in usable], [index[i] for i in usable],
                                      [pending[i].temperature_c for i in usable])
            fit = self._pv_fit.setdefault(array.id, deque(maxlen=self.history_days * 96))
            for i, model_kw in zip(usable, modelled, strict=True):
                if model_kw > 0.05 * array.peak_power_kwp:
                    fit.append((pending[i].pv_kw[array.id], model_kw))

    def pv_calibration(self, array_id: str) -> float:
        """Measured over modelled output of an array (1 until it has produced enough to tell)."""
        fit = self._pv_fit.get(array_id)
        if not fit or len(fit) < 4:
            return 1.0
        measured, modelled = sum(f[0] for f in fit), sum(f[1] for f in fit)
        return min(max(measured / modelled, 0.3), 1.5) if modelled > 0 else 1.0

    @staticmethod
    def _pv_model(site: m.Site, array: m.PvArray, moments: Sequence[datetime], clear_sky_index: list[float] | None,
                  temperature_c: Sequence[float | None]) -> list[float]:
        place = site.location
        monthly = _linke_turbidity(place.latitude, place.longitude)
        power = forecast.pv_power_kw(
            pd.DatetimeIndex(list(moments)), array.peak_power_kwp, latitude=place.latitude,
            longitude=place.longitude, altitude_m=place.elevation_m, tilt_deg=array.tilt_deg,
            azimuth_deg=array.azimuth_deg,
            clear_sky_index=None if clear_sky_index is None else np.asarray(clear_sky_index),
            linke_turbidity=np.asarray([monthly[t.month - 1] for t in moments]),
            temperature_c=np.asarray([12.0 if t is None else t for t in temperature_c]))
        return [float(v) for v in power]

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
        pv = {}
        for array in site.assets:
            if isinstance(array, m.PvArray):
                ratio = self.pv_calibration(array.id)
                modelled = self._pv_model(site, array, mids, cloud, temperature)
                pv[array.id] = [min(ratio * v, array.inverter_max_power_kw or math.inf) for v in modelled]
        # Daylight is under-forecast on purpose: too little light costs comfort, too much only energy.
        daylight = {a.id: [DAYLIGHT_PRUDENCE * self._daylight_ratio.get(a.id, DAYLIGHT_LUX_PER_W_M2) * g for g in ghi]
                    for a in site.assets if isinstance(a, m.LightingZone)}
        spot = self.spot(mids) if self.spot else None
        return Forecasts(
            start=start, step=step, n_steps=n_steps, base_load_kw=self._base_load(mids, tz),
            outdoor_temperature_c=temperature, irradiance_w_m2=ghi,
            import_price_eur_per_kwh=tariff_prices(site.tariff, mids, tz, self.tempo_colours, spot),
            export_price_eur_per_kwh=[site.tariff.export_price_eur_per_kwh] * n_steps,
            carbon_kg_per_kwh=carbon_intensity(mids, tz), pv_kw=pv, daylight_lux=daylight,
            dark=[e < DARK_BELOW_ELEVATION_DEG for e in elevation], ev_sessions=self._sessions(site, snapshot),
        )

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

    def _sessions(self, site: m.Site, snapshot: Snapshot) -> list[EvSessionForecast]:
        sessions = []
        now = snapshot.taken_at
        for asset in site.assets:
            if not isinstance(asset, m.EvChargerPool):
                continue
            for charger in asset.chargers:
                since = self._plugged_since.get(charger.id)
                state = snapshot.number(charger.points["plug_state"])
                if since is None or state is None or int(state) == 3:
                    continue
                delivered = snapshot.number(charger.points.get("session_energy", "")) or 0.0
                sessions.append(ev_session(charger, since, now, delivered,
                                           snapshot.number(charger.points.get("time_to_departure", "")),
                                           snapshot.number(charger.points.get("energy_request", ""))))
        return sessions


def ev_session(charger: m.EvCharger, plugged_since: datetime, now: datetime, delivered_kwh: float,
               time_to_departure_s: float | None, energy_request_kwh: float | None) -> EvSessionForecast:
    """What to plan for a car still wanting energy. A declared departure (ISO 15118 or the driver's app,
    0 when none) is planned a margin early, since drivers leave early; a declared energy is the car's
    own need. Without them: an early departure and a large need, so the car is served first."""
    if time_to_departure_s is not None and time_to_departure_s > 0:
        # Inside the margin the car may leave any minute: what it still needs is wanted now.
        departure = max(now + timedelta(seconds=time_to_departure_s) - DECLARED_DEPARTURE_MARGIN,
                        now + MIN_DECLARED_STAY)
    else:
        departure = max(plugged_since + WORKPLACE_PLUG_IN, now + MIN_PLANNED_STAY)
    if energy_request_kwh is not None and energy_request_kwh > 0:
        needed = energy_request_kwh - delivered_kwh
    else:
        needed = WORKPLACE_ENERGY_KWH - delivered_kwh
    # A car still drawing after the expected need, or past the expected stay, may leave any minute
    # wanting more: it gets what the charger can give until then.
    still = charger.max_power_kw * (departure - now).total_seconds() / 3600.0 if needed <= 0 or \
        departure <= now + MIN_PLANNED_STAY else STILL_CHARGING_KWH
    return EvSessionForecast(charger.id, now, departure, max(needed, still))
