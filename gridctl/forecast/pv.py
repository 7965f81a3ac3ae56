"""PV output: clear sky × a clear-sky index on the array's plane (Erbs, Hay-Davies, PVWatts), and its
calibration on what the array really made."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import pvlib

from gridctl.config import models as m
from gridctl.forecast.sun import linke_turbidity

# Default module temperature input when the outdoor temperature is unknown.
DEFAULT_TEMPERATURE_C = 12.0
# The calibration stays within these bounds of the model, and needs this many samples to move from 1.
MIN_YIELD, MAX_YIELD = 0.3, 1.5
MIN_YIELD_SAMPLES = 4


def pv_power_kw(
    moments: pd.DatetimeIndex,
    peak_power_kw: float,
    *,
    latitude: float,
    longitude: float,
    altitude_m: float = 0.0,
    tilt_deg: float = 35.0,
    azimuth_deg: float = 180.0,
    clear_sky_index: np.ndarray | None = None,
    linke_turbidity: np.ndarray | float | None = None,
    temperature_c: np.ndarray | float = DEFAULT_TEMPERATURE_C,
    wind_speed_m_s: np.ndarray | float = 2.0,
    gamma_per_k: float = -0.004,
    system_losses: float = 0.14,
    inverter_kw: float | None = None,
) -> np.ndarray:
    """AC power (kW) at each instant of `moments` under clear sky × `clear_sky_index` (1 when absent).

    `linke_turbidity` spares pvlib a read of its climatology file on every call when the caller has it.
    """
    if moments.tz is None:
        raise ValueError("moments must be timezone-aware")
    loc = pvlib.location.Location(latitude, longitude, altitude=altitude_m)
    sun = loc.get_solarposition(moments)
    turbidity = {} if linke_turbidity is None else {
        "linke_turbidity": pd.Series(np.broadcast_to(linke_turbidity, len(moments)), index=moments)}
    clear = loc.get_clearsky(moments, model="ineichen", solar_position=sun, **turbidity)
    ghi = clear["ghi"].to_numpy()
    dni, dhi = clear["dni"].to_numpy(), clear["dhi"].to_numpy()
    if clear_sky_index is not None:
        ghi = ghi * np.asarray(clear_sky_index, dtype=float)
        # Clouds turn beam into diffuse light: split the reduced global irradiance again.
        parts = pvlib.irradiance.erbs(pd.Series(ghi, index=moments), sun["zenith"], moments)
        dni, dhi = parts["dni"].to_numpy(), parts["dhi"].to_numpy()
    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg, azimuth_deg, sun["apparent_zenith"], sun["azimuth"], dni, ghi, dhi,
        dni_extra=pvlib.irradiance.get_extra_radiation(moments), model="haydavies",
    )["poa_global"].fillna(0.0).to_numpy()
    t_cell = pvlib.temperature.faiman(poa, temperature_c, wind_speed_m_s)
    dc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, peak_power_kw, gamma_per_k)
    ac = np.clip(np.asarray(dc, dtype=float) * (1.0 - system_losses), 0.0, None)
    if inverter_kw is not None:
        ac = np.minimum(ac, inverter_kw)
    return ac


def pv_output_kw(site: m.Site, array: m.PvArray, moments: Sequence[datetime], clear_sky_index: list[float] | None,
                 temperature_c: Sequence[float | None]) -> list[float]:
    """Modelled output of an array of the site (clear sky when `clear_sky_index` is None)."""
    place = site.location
    temperatures = tuple(DEFAULT_TEMPERATURE_C if t is None else float(t) for t in temperature_c)
    per_kwp = _output_per_kwp(place.latitude, place.longitude, place.elevation_m, array.tilt_deg, array.azimuth_deg,
                              tuple(moments), None if clear_sky_index is None else tuple(clear_sky_index),
                              temperatures)
    return [v * array.peak_power_kwp for v in per_kwp]


@functools.lru_cache(maxsize=16)
def _output_per_kwp(latitude: float, longitude: float, elevation_m: float, tilt_deg: float, azimuth_deg: float,
                    moments: tuple[datetime, ...], clear_sky_index: tuple[float, ...] | None,
                    temperature_c: tuple[float, ...]) -> tuple[float, ...]:
    # PVWatts is linear in the array's size: arrays of one plane under one sky share one evaluation (a
    # district's rooftops, every cycle).
    monthly = linke_turbidity(latitude, longitude)
    power = pv_power_kw(
        pd.DatetimeIndex(list(moments)), 1.0, latitude=latitude, longitude=longitude, altitude_m=elevation_m,
        tilt_deg=tilt_deg, azimuth_deg=azimuth_deg,
        clear_sky_index=None if clear_sky_index is None else np.asarray(clear_sky_index),
        linke_turbidity=np.asarray([monthly[t.month - 1] for t in moments]),
        temperature_c=np.asarray(temperature_c))
    return tuple(float(v) for v in power)


class PvYield:
    """An array's yield against its model: measured over modelled energy on recent samples while it ran free."""

    def __init__(self, samples: int) -> None:
        self._fit: deque[tuple[float, float]] = deque(maxlen=samples)

    def add(self, measured_kw: float, modelled_kw: float) -> None:
        self._fit.append((measured_kw, modelled_kw))

    def ratio(self) -> float:
        """Measured over modelled output (1 until the array has produced enough to tell)."""
        if len(self._fit) < MIN_YIELD_SAMPLES:
            return 1.0
        measured, modelled = sum(f[0] for f in self._fit), sum(f[1] for f in self._fit)
        return min(max(measured / modelled, MIN_YIELD), MAX_YIELD) if modelled > 0 else 1.0
