"""Price and carbon series on a horizon from tariff calendars and market signals.

Prices in €/kWh incl. taxes, carbon in kg CO2/kWh. Tariff hours are local (Europe/Paris) wall-clock hours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, time, timedelta

import numpy as np
import pandas as pd

LOCAL_TZ = "Europe/Paris"

# EDF regulated tariffs from 1 Aug 2025 (€/kWh incl. tax).
EDF_BASE_2025_08 = 0.1952
EDF_HPHC_2025_08 = {"hp": 0.2081, "hc": 0.1635}
EDF_TEMPO_2025_08 = {
    "blue": {"hc": 0.1232, "hp": 0.1494},
    "white": {"hc": 0.1391, "hp": 0.1730},
    "red": {"hc": 0.1460, "hp": 0.6468},
}
DEFAULT_OFFPEAK: tuple[tuple[time, time], ...] = ((time(22, 0), time(6, 0)),)


def base_price(index: pd.DatetimeIndex, price_eur_per_kwh: float = EDF_BASE_2025_08) -> pd.Series:
    return pd.Series(price_eur_per_kwh, index=index, name="price_eur_per_kwh")


def _in_windows(index: pd.DatetimeIndex, windows: Sequence[tuple[time, time]], tz: str) -> np.ndarray:
    local = index.tz_convert(tz)
    minutes = local.hour * 60 + local.minute
    out = np.zeros(len(index), dtype=bool)
    for start, end in windows:
        a, b = start.hour * 60 + start.minute, end.hour * 60 + end.minute
        out |= ((minutes >= a) & (minutes < b)) if a < b else ((minutes >= a) | (minutes < b))
    return out


def hphc_price(
    index: pd.DatetimeIndex,
    hp_eur_per_kwh: float = EDF_HPHC_2025_08["hp"],
    hc_eur_per_kwh: float = EDF_HPHC_2025_08["hc"],
    offpeak: Sequence[tuple[time, time]] = DEFAULT_OFFPEAK,
    tz: str = LOCAL_TZ,
) -> pd.Series:
    """Peak / off-peak tariff; off-peak windows in local time (22:00–06:00 by default; TURPE 7 sites
    may pass e.g. ((23:00, 04:00), (12:00, 15:00)))."""
    hc = _in_windows(index, offpeak, tz)
    return pd.Series(np.where(hc, hc_eur_per_kwh, hp_eur_per_kwh), index=index, name="price_eur_per_kwh")


def tempo_colour(index: pd.DatetimeIndex, colours: Mapping[date, str], tz: str = LOCAL_TZ,
                 default: str = "blue") -> pd.Series:
    """The Tempo colour in force at each time: a Tempo day runs 06:00 to 06:00 local time."""
    local = index.tz_convert(tz)
    days = (local - timedelta(hours=6)).date
    return pd.Series([colours.get(d, default) for d in days], index=index, name="tempo_colour")


def tempo_price(
    index: pd.DatetimeIndex,
    colours: Mapping[date, str],
    prices: Mapping[str, Mapping[str, float]] = EDF_TEMPO_2025_08,
    offpeak: Sequence[tuple[time, time]] = DEFAULT_OFFPEAK,
    tz: str = LOCAL_TZ,
    default: str = "blue",
) -> pd.Series:
    """Tempo tariff from a colour calendar (date of the Tempo day → "blue" | "white" | "red").

    Days missing from the calendar (not yet announced) take `default`."""
    colour = tempo_colour(index, colours, tz, default)
    hc = _in_windows(index, offpeak, tz)
    values = [prices[c]["hc" if h else "hp"] for c, h in zip(colour, hc, strict=True)]
    return pd.Series(values, index=index, name="price_eur_per_kwh")


def spot_price(
    index: pd.DatetimeIndex,
    spot_eur_per_mwh: pd.Series,
    *,
    fees_eur_per_kwh: float = 0.0,
    vat: float = 0.0,
) -> pd.Series:
    """Dynamic tariff: day-ahead spot (hourly or 15-min, €/MWh, held over its period) + fees, then VAT.

    Steps not covered by the published spot are NaN, so a caller can tell a missing price from a price."""
    spot = spot_eur_per_mwh.sort_index()
    period = spot.index.to_series().diff().min() if len(spot) > 1 else pd.Timedelta("1h")
    held = spot.reindex(index, method="ffill", tolerance=period - pd.Timedelta("1ns"))
    return ((held / 1000.0 + fees_eur_per_kwh) * (1.0 + vat)).rename("price_eur_per_kwh")


def carbon_intensity(
    index: pd.DatetimeIndex,
    signal_g_per_kwh: pd.Series | None = None,
    *,
    mean_g_per_kwh: float = 21.7,
    tz: str = LOCAL_TZ,
) -> pd.Series:
    """Carbon intensity in kg/kWh: the grid operator's signal where it exists, held over its period;
    elsewhere a daily shape around `mean_g_per_kwh` (higher at the evening peak, lower at midday)."""
    local = index.tz_convert(tz)
    hours = local.hour + local.minute / 60.0
    shape = 1.0 + 0.35 * np.cos(2 * np.pi * (hours - 19.0) / 24.0)
    out = pd.Series(mean_g_per_kwh * shape, index=index)
    if signal_g_per_kwh is not None and len(signal_g_per_kwh):
        sig = signal_g_per_kwh.sort_index()
        period = sig.index.to_series().diff().min() if len(sig) > 1 else pd.Timedelta("1h")
        held = sig.reindex(index, method="ffill", tolerance=period - pd.Timedelta("1ns"))
        out = held.fillna(out)
    return (out / 1000.0).rename("carbon_kg_per_kwh")
