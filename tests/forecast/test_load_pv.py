"""The load profile forecast and the PV model."""

import numpy as np
import pandas as pd
import pytest

from gridctl.forecast.load import load_forecast
from gridctl.forecast.pv import pv_power_kw

LILLE = {"latitude": 50.63, "longitude": 3.06, "altitude_m": 20.0}


def horizon_index(start: pd.Timestamp, periods: int, freq: str = "15min") -> pd.DatetimeIndex:
    return pd.date_range(start.tz_convert("UTC"), periods=periods, freq=freq)


def _weekly_history(weeks: int = 5, level: float = 1.0) -> pd.Series:
    idx = pd.date_range("2026-01-05 00:00", periods=weeks * 7 * 96, freq="15min", tz="Europe/Paris")
    hour = idx.hour + idx.minute / 60
    weekday = idx.day_of_week
    kw = 1.0 + np.sin(np.pi * hour / 24) + 0.5 * (weekday >= 5)
    return pd.Series(level * kw, index=idx.tz_convert("UTC"), name="meter")


def test_load_forecast_repeats_a_stable_weekly_pattern() -> None:
    hist = _weekly_history()
    idx = horizon_index(hist.index[-1] + pd.Timedelta("15min"), 192)
    f = load_forecast(hist, idx)
    local = idx.tz_convert("Europe/Paris")
    expected = 1.0 + np.sin(np.pi * (local.hour + local.minute / 60) / 24) + 0.5 * (local.day_of_week >= 5)
    assert f.to_numpy() == pytest.approx(np.asarray(expected), abs=1e-9)


def test_recent_level_correction_fades_with_lead_time() -> None:
    hist = _weekly_history()
    hist[hist.index > hist.index[-1] - pd.Timedelta("24h")] *= 1.3
    idx = horizon_index(hist.index[-1] + pd.Timedelta("15min"), 192)
    f = load_forecast(hist, idx, correction_decay_hours=12)
    plain = load_forecast(_weekly_history(), idx)
    first, last = f.iloc[0] / plain.iloc[0], f.iloc[-1] / plain.iloc[-1]
    assert first > 1.2
    assert 1.0 <= last < 1.05


def test_public_holidays_are_forecast_as_sundays() -> None:
    hist = _weekly_history()
    start = hist.index[-1] + pd.Timedelta("15min")
    idx = horizon_index(start, 96)
    holiday = idx.tz_convert("Europe/Paris")[40].date()
    f = load_forecast(hist, idx, holidays=[holiday])
    sunday = load_forecast(hist, idx + pd.Timedelta(days=(6 - idx[40].day_of_week) % 7))
    assert f.iloc[40] == pytest.approx(sunday.iloc[40])
    assert f.iloc[40] != pytest.approx(load_forecast(hist, idx).iloc[40])


def test_pv_clear_sky_yield_for_lille() -> None:
    idx = horizon_index(pd.Timestamp("2025-01-01", tz="UTC"), 365 * 24, freq="1h")
    pv = pv_power_kw(idx + pd.Timedelta("30min"), 1.0, **LILLE)
    yearly = pv.sum()  # kWh per kWp with 1 h steps
    assert 1400 < yearly < 1950
    night = pv[idx.tz_convert("Europe/Paris").hour == 1]
    assert (night == 0).all()


def test_pv_clear_sky_index_reduces_output() -> None:
    idx = horizon_index(pd.Timestamp("2026-06-15 00:00", tz="UTC"), 96)
    clear = pv_power_kw(idx, 5.0, **LILLE)
    overcast = pv_power_kw(idx, 5.0, clear_sky_index=np.full(len(idx), 0.3), **LILLE)
    assert 0.15 < overcast.sum() / clear.sum() < 0.45
    assert clear.max() <= 5.0
