"""The simulated weather provider errs as published day-ahead verification says real ones do."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sim.physics.nwp import NumericalForecast
from sim.physics.weather import Weather


def _errors_by_day(days: int = 120, seed: int = 2) -> tuple[list[float], list[float], list[float]]:
    """Hourly GHI nRMSE (RMSE over the mean measured GHI, daylight hours), GHI bias over the mean, and
    temperature MAE, for forecasts 0–24, 24–48 and 48–72 h after the run, runs spread through a year."""
    weather = Weather(50.63, 3.06, seed)
    nwp = NumericalForecast(weather, seed)
    sq, bias, measured, daylight, temp, count = ([0.0] * 3 for _ in range(6))
    for d in range(days):
        run = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=3 * d % 365, hours=6 * (d % 4))
        for lead_h in range(1, 72):
            moment = run + timedelta(hours=lead_h)
            day = lead_h // 24
            true_ghi = weather.sample(moment).ghi_w_per_m2
            temp[day] += abs(nwp.temperature_c(run, moment) - weather.temperature_c(moment))
            count[day] += 1
            if true_ghi > 20.0:
                error = nwp.ghi_w_m2(run, moment) - true_ghi
                sq[day] += error * error
                bias[day] += error
                measured[day] += true_ghi
                daylight[day] += 1
    return ([math.sqrt(sq[i] / daylight[i]) / (measured[i] / daylight[i]) for i in range(3)],
            [bias[i] / measured[i] for i in range(3)], [temp[i] / count[i] for i in range(3)])


def test_day_ahead_errors_match_published_verification_and_grow_with_lead_time() -> None:
    nrmse, bias, temperature_mae = _errors_by_day()
    # Hourly day-ahead GHI RMSE of 35–50 % of the mean irradiance (central Europe), more beyond day one.
    assert 0.30 < nrmse[0] < 0.45 and 0.35 < nrmse[1] < 0.52 and 0.35 < nrmse[2] < 0.55
    assert nrmse[0] < min(nrmse[1], nrmse[2])
    assert all(-0.02 < b < 0.10 for b in bias)
    assert 0.8 < temperature_mae[0] < 1.6 and temperature_mae[0] < temperature_mae[2] < 2.2


def test_runs_are_published_hours_after_their_base_time_and_disagree() -> None:
    weather = Weather(seed=1)
    nwp = NumericalForecast(weather, 1)
    assert nwp.latest_run(datetime(2026, 1, 13, 9, 59, tzinfo=UTC)) == datetime(2026, 1, 13, 0, tzinfo=UTC)
    assert nwp.latest_run(datetime(2026, 1, 13, 10, 0, tzinfo=UTC)) == datetime(2026, 1, 13, 6, tzinfo=UTC)
    noon = datetime(2026, 1, 14, 12, tzinfo=UTC)
    runs = [datetime(2026, 1, 13, h, tzinfo=UTC) for h in (0, 6)]
    assert nwp.ghi_w_m2(runs[0], noon) != nwp.ghi_w_m2(runs[1], noon)
    assert nwp.ghi_w_m2(runs[0], noon) == NumericalForecast(Weather(seed=1), 1).ghi_w_m2(runs[0], noon)
