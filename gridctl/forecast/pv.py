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
    k = None if cloud_cover_pct is None else clear_sky_index(_align(cloud_cover_pct, index)).to_numpy()
    ac = pv_power_kw(mid, peak_power_kw, latitude=latitude, longitude=longitude, altitude_m=altitude_m,
                     tilt_deg=tilt_deg, azimuth_deg=azimuth_deg, clear_sky_index=k,
                     temperature_c=_align(temperature_c, index).to_numpy(),
                     wind_speed_m_s=_align(wind_speed_m_s, index).to_numpy(), gamma_per_k=gamma_per_k,
                     system_losses=system_losses, inverter_kw=inverter_kw)
    return pd.Series(ac, index=index, name="pv_kw")


def pv_power_kw(
    moments: pd.DatetimeIndex,
    peak_power_kw: float,
    *,
    latitude: float = LILLE[0],
    longitude: float = LILLE[1],
    altitude_m: float = LILLE[2],
    tilt_deg: float = 35.0,
    azimuth_deg: float = 180.0,
    clear_sky_index: np.ndarray | None = None,
    linke_turbidity: np.ndarray | float | None = None,
    temperature_c: np.ndarray | float = 12.0,
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


def _align(value: pd.Series | float, index: pd.DatetimeIndex) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.sort_index().reindex(index, method="ffill").bfill().fillna(0.0)
    return pd.Series(float(value), index=index)
