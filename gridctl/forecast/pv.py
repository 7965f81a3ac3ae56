"""PV forecast: pvlib clear-sky irradiance scaled by a cloud index, transposed, through PVWatts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib

LILLE = (50.63, 3.06, 20.0)


def clear_sky_index(cloud_cover_pct: pd.Series) -> pd.Series:
    """Global clear-sky index from total cloud cover (Kasten & Czeplak): 1 - 0.75 (C/100)^3.4."""
    c = cloud_cover_pct.clip(0.0, 100.0) / 100.0
    return 1.0 - 0.75 * c**3.4


def pv_forecast(
    index: pd.DatetimeIndex,
    peak_power_kw: float,
    *,
    latitude: float = LILLE[0],
    longitude: float = LILLE[1],
    altitude_m: float = LILLE[2],
    tilt_deg: float = 35.0,
    azimuth_deg: float = 180.0,
    cloud_cover_pct: pd.Series | None = None,
    temperature_c: pd.Series | float = 12.0,
    wind_speed_m_s: pd.Series | float = 2.0,
    gamma_per_k: float = -0.004,
    system_losses: float = 0.14,
    inverter_kw: float | None = None,
) -> pd.Series:
    """Mean AC power (kW) over each step of `index` (step start times, timezone-aware).

    Irradiance is evaluated at the middle of each step. Without a cloud forecast the result is the
    clear-sky upper bound. Weather series are aligned on `index` (nearest earlier value).
    """
    if index.tz is None:
        raise ValueError("index must be timezone-aware")
    step = pd.Timedelta(index[1] - index[0]) if len(index) > 1 else pd.Timedelta("15min")
    mid = index + step / 2
    loc = pvlib.location.Location(latitude, longitude, altitude=altitude_m)
    sun = loc.get_solarposition(mid)
    clear = loc.get_clearsky(mid, model="ineichen", solar_position=sun)
    ghi = clear["ghi"].to_numpy()
    dni, dhi = clear["dni"].to_numpy(), clear["dhi"].to_numpy()
    if cloud_cover_pct is not None:
        k = clear_sky_index(_align(cloud_cover_pct, index)).to_numpy()
        ghi = ghi * k
        # Clouds turn beam into diffuse light: split the reduced global irradiance again.
        parts = pvlib.irradiance.erbs(pd.Series(ghi, index=mid), sun["zenith"], mid)
        dni, dhi = parts["dni"].to_numpy(), parts["dhi"].to_numpy()
    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg, azimuth_deg, sun["apparent_zenith"], sun["azimuth"], dni, ghi, dhi,
        dni_extra=pvlib.irradiance.get_extra_radiation(mid), model="haydavies",
    )["poa_global"].fillna(0.0).to_numpy()
    t_air = _align(temperature_c, index).to_numpy()
    wind = _align(wind_speed_m_s, index).to_numpy()
    t_cell = pvlib.temperature.faiman(poa, t_air, wind)
    dc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, peak_power_kw, gamma_per_k)
    ac = np.clip(np.asarray(dc) * (1.0 - system_losses), 0.0, None)
    if inverter_kw is not None:
        ac = np.minimum(ac, inverter_kw)
    return pd.Series(ac, index=index, name="pv_kw")


def _align(value: pd.Series | float, index: pd.DatetimeIndex) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.sort_index().reindex(index, method="ffill").bfill().fillna(0.0)
    return pd.Series(float(value), index=index)
