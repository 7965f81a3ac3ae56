"""Forecasts from what the service can know at the time: measurements, calendars, clear-sky sun."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache

import pandas as pd
import pvlib

from gridctl import forecast
from gridctl.config import models as m
from gridctl.service.calendar import tariff_prices
from gridctl.service.forecasts import EvSessionForecast, Forecasts
from gridctl.service.snapshot import Snapshot

# Indoor daylight at the work plane per W/m² of outdoor global irradiance: ~110 lm/W luminous
# efficacy of daylight × a 2.5 % daylight factor (a well-glazed office).
DAYLIGHT_LUX_PER_W_M2 = 2.75
DAYLIGHT_PRUDENCE = 0.8
PERFORMANCE_RATIO = 0.85
# Below this sun elevation street lighting is on (civil twilight is −6°; photocells switch earlier).
DARK_BELOW_ELEVATION_DEG = -3.0
# ElaadNL workplace statistics (reference.md): median plug-in 4.9 h and 8.8 kWh. A driver is not asked
# when they leave, so plan for an early departure (well inside the shortest stays: a car rarely leaves
# within 1.5 h) and a large need (about the ninth decile): the car is served first and only what the
# stay leaves room for is shifted.
WORKPLACE_PLUG_IN = timedelta(hours=1.5)
WORKPLACE_ENERGY_KWH = 19.0
STILL_CHARGING_KWH = 5.0


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


def controlled_power_kw(site: m.Site, snapshot: Snapshot) -> float:
    """Power of everything gridctl schedules (battery charging positive, PV negative)."""
    total = 0.0
    for asset in site.assets:
        if isinstance(asset, m.EvChargerPool):
            total += sum(snapshot.number(c.points["power"]) or 0.0 for c in asset.chargers)
        elif isinstance(asset, m.PvArray):
            total -= snapshot.number(asset.points["power"]) or 0.0
        elif isinstance(asset, m.ThermalZone):
            total += snapshot.number(asset.points["heat_pump_power"]) or 0.0
        elif isinstance(asset, m.BatteryAsset | m.LightingZone | m.PublicLightingCircuit | m.DeferrableAppliance):
            value = snapshot.number(asset.points["power"]) or 0.0
            point = snapshot.readings.get(asset.points["power"])
            unit_w = point is not None and site.point(asset.points["power"]).unit == "W"
            total += value / 1000.0 if unit_w else value
    return total


def base_load_kw(site: m.Site, snapshot: Snapshot) -> float | None:
    """The site's load that gridctl does not schedule: grid power minus what it schedules."""
    address = site.grid.points.get("power")
    grid = snapshot.number(address) if address else None
    if grid is None:
        return None
    return max(0.0, grid - controlled_power_kw(site, snapshot))


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


class SignalForecaster:
    """Load by time of day from the service's own recent measurements (same time yesterday, corrected
    to the current level), PV and daylight from clear sky × the current cloud index, outdoor
    temperature by persistence with a daily swing, prices from the tariff calendar."""

    def __init__(self, history_days: int = 8, tempo_colours: dict[str, str] | None = None,
                 spot_eur_per_kwh: Callable[[Sequence[datetime]], list[float]] | None = None) -> None:
        self.tempo_colours = tempo_colours or {}
        self.spot = spot_eur_per_kwh
        self._load: deque[tuple[datetime, float]] = deque(maxlen=history_days * 24 * 12)
        self._plugged_since: dict[str, datetime] = {}
        # Per lighting zone, indoor daylight lux per W/m² outdoors, learnt from its sensor.
        self._daylight_ratio: dict[str, float] = {}

    def observe(self, site: m.Site, snapshot: Snapshot) -> None:
        """Record the base load and EV plug-ins seen in a snapshot (called every dispatch cycle)."""
        load = base_load_kw(site, snapshot)
        if load is not None:
            self._load.append((snapshot.taken_at, load))
        self._learn_daylight(site, snapshot)
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

    async def forecast(self, site: m.Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts:
        self.observe(site, snapshot)
        tz = site.tz
        mids = [start + step * k + step / 2 for k in range(n_steps)]
        ghi_clear, elevation = solar(site, mids)
        cloud = self._cloud_index(site, snapshot)
        ghi = [g * cloud for g in ghi_clear]
        temperature = self._temperature(site, snapshot, mids, tz)
        pv = {a.id: [min(a.peak_power_kwp * g / 1000.0 * PERFORMANCE_RATIO, a.inverter_max_power_kw or math.inf)
                     for g in ghi] for a in site.assets if isinstance(a, m.PvArray)}
        # Daylight is under-forecast on purpose: too little light costs comfort, too much only energy.
        daylight = {a.id: [DAYLIGHT_PRUDENCE * self._daylight_ratio.get(a.id, DAYLIGHT_LUX_PER_W_M2) * g for g in ghi]
                    for a in site.assets if isinstance(a, m.LightingZone)}
        spot = self.spot(mids) if self.spot else None
        return Forecasts(
            start=start, step=step, n_steps=n_steps, base_load_kw=self._base_load(mids, snapshot.taken_at, tz),
            outdoor_temperature_c=temperature, irradiance_w_m2=ghi,
            import_price_eur_per_kwh=tariff_prices(site.tariff, mids, tz, self.tempo_colours, spot),
            export_price_eur_per_kwh=[site.tariff.export_price_eur_per_kwh] * n_steps,
            carbon_kg_per_kwh=carbon_intensity(mids, tz), pv_kw=pv, daylight_lux=daylight,
            dark=[e < DARK_BELOW_ELEVATION_DEG for e in elevation], ev_sessions=self._sessions(site, snapshot),
        )

    def _learn_daylight(self, site: m.Site, snapshot: Snapshot) -> None:
        zones = [a for a in site.assets if isinstance(a, m.LightingZone)]
        if not zones:
            return
        (clear,), _ = solar(site, [snapshot.taken_at])
        ghi = clear * self._cloud_index(site, snapshot)
        if ghi < 50.0:
            return
        for zone in zones:
            illuminance = snapshot.number(zone.points["illuminance"])
            dimming = snapshot.number(zone.points["dimming"])
            if illuminance is None or dimming is None:
                continue
            daylight = max(illuminance - dimming / 100.0 * zone.rated_illuminance_lx, 0.0)
            sample = daylight / ghi
            previous = self._daylight_ratio.get(zone.id)
            self._daylight_ratio[zone.id] = sample if previous is None else 0.8 * previous + 0.2 * sample

    def _cloud_index(self, site: m.Site, snapshot: Snapshot) -> float:
        (clear,), _ = solar(site, [snapshot.taken_at])
        if clear < 50.0:
            return 0.7
        address = irradiance_point(site)
        measured = snapshot.number(address) if address else None
        if measured is None:
            pv = next((a for a in site.assets if isinstance(a, m.PvArray)), None)
            power = snapshot.number(pv.points["power"]) if pv else None
            if pv is None or power is None:
                return 0.7
            measured = power * 1000.0 / (pv.peak_power_kwp * PERFORMANCE_RATIO)
        return min(max(measured / clear, 0.05), 1.1)

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

    def _base_load(self, mids: list[datetime], now: datetime, tz) -> list[float]:
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
        self._learn_daylight(site, snapshot)
        for asset in site.assets:
            if not isinstance(asset, m.EvChargerPool):
                continue
            for charger in asset.chargers:
                since = self._plugged_since.get(charger.id)
                state = snapshot.number(charger.points["plug_state"])
                if since is None or state is None or int(state) == 3:
                    continue
                delivered = snapshot.number(charger.points.get("session_energy", "")) or 0.0
                departure = max(since + WORKPLACE_PLUG_IN, snapshot.taken_at + timedelta(minutes=30))
                # A car that still draws after the expected need wants more: keep asking for a share.
                needed = max(WORKPLACE_ENERGY_KWH - delivered, STILL_CHARGING_KWH)
                sessions.append(EvSessionForecast(charger.id, snapshot.taken_at, departure, needed))
        return sessions
