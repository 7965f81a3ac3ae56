import numpy as np
import pandas as pd
import pytest

from gridctl.forecast import accuracy, clear_sky_index, horizon_index, load_forecast, load_forecasts, pv_forecast


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


def test_load_forecasts_per_meter_and_holidays() -> None:
    hist = pd.DataFrame({"a": _weekly_history(), "b": _weekly_history(level=2.0)})
    start = hist.index[-1] + pd.Timedelta("15min")
    idx = horizon_index(start, 96)
    holiday = idx.tz_convert("Europe/Paris")[40].date()
    f = load_forecasts(hist, idx, holidays=[holiday])
    assert list(f.columns) == ["a", "b"]
    assert f["b"].to_numpy() == pytest.approx(2 * f["a"].to_numpy())
    sunday = load_forecast(hist["a"], idx + pd.Timedelta(days=(6 - idx[40].day_of_week) % 7))
    assert f["a"].iloc[40] == pytest.approx(sunday.iloc[40])


def test_pv_clear_sky_yield_for_lille() -> None:
    idx = horizon_index(pd.Timestamp("2025-01-01", tz="UTC"), 365 * 24, freq="1h")
    pv = pv_forecast(idx, 1.0)
    yearly = pv.sum()  # kWh per kWp with 1 h steps
    assert 1400 < yearly < 1950
    night = pv[idx.tz_convert("Europe/Paris").hour == 1]
    assert (night == 0).all()


def test_pv_cloud_index_reduces_output() -> None:
    idx = horizon_index(pd.Timestamp("2026-06-15 00:00", tz="UTC"), 96)
    clear = pv_forecast(idx, 5.0)
    overcast = pv_forecast(idx, 5.0, cloud_cover_pct=pd.Series(100.0, index=idx))
    assert 0.15 < overcast.sum() / clear.sum() < 0.45
    assert clear.max() <= 5.0
    assert clear_sky_index(pd.Series([0.0, 100.0])).tolist() == pytest.approx([1.0, 0.25])


def test_accuracy_figures() -> None:
    idx = pd.date_range("2026-01-01", periods=4, freq="1h", tz="UTC")
    actual = pd.Series([1.0, 2.0, 3.0, 4.0], index=idx)
    fc = pd.Series([1.0, 3.0, 3.0, 2.0], index=idx)
    acc = accuracy(fc, actual)
    assert acc["n"] == 4
    assert acc["mae"] == pytest.approx(0.75)
    assert acc["rmse"] == pytest.approx(np.sqrt(5 / 4))
    assert acc["bias"] == pytest.approx(-0.25)
    assert acc["nrmse"] == pytest.approx(np.sqrt(5 / 4) / 2.5)
    assert accuracy(fc, actual.shift(10, freq="h"))["n"] == 0
