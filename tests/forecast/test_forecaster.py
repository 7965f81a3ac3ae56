"""The service's own forecasts: clear-sky index, PV calibration, load learnt from history, EV needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from drivers.base import Quality, Reading
from gridctl.assets import site_adapters
from gridctl.config import load_site
from gridctl.config import models as m
from gridctl.forecast.ev import PRIOR_ENERGY_KWH, PRIOR_STAY, STILL_CHARGING_KWH, ev_session
from gridctl.forecast.forecaster import SignalForecaster, observed_points
from gridctl.forecast.pv import pv_output_kw
from gridctl.forecast.sky import PRIOR_INDEX, CloudIndexHistory
from gridctl.forecast.sun import solar
from gridctl.history import SiteReadings
from gridctl.service.metrics import ServiceMetrics
from gridctl.service.snapshot import Snapshot

PARIS = ZoneInfo("Europe/Paris")
SITES = Path(__file__).resolve().parents[2] / "sites"
STEP = timedelta(minutes=15)


def _daylight_samples(history: CloudIndexHistory, day: datetime, index: float, until_hour: int = 18) -> None:
    moment = day.replace(hour=8)
    while moment.hour < until_hour:
        history.record(moment.astimezone(UTC), index)
        moment += STEP


def test_cloud_index_starts_at_the_last_value_relaxes_to_today_and_uses_the_recent_days_after() -> None:
    history = CloudIndexHistory(PARIS)
    for days_ago in (3, 2, 1):
        _daylight_samples(history, datetime(2026, 7, 10 - days_ago, tzinfo=PARIS), 0.9)
    today = datetime(2026, 7, 10, tzinfo=PARIS)
    _daylight_samples(history, today, 0.3, until_hour=12)
    now = today.replace(hour=12).astimezone(UTC)
    climate = (3 * 0.9 + PRIOR_INDEX) / 4
    assert history.climate(now) == pytest.approx(climate)
    # Four hours of today observed (08:00-11:45) weigh against one hour at the climate.
    level = (3.75 * 0.3 + climate) / 4.75
    assert history.today_level(now) == pytest.approx(level)
    soon, afternoon, tomorrow = now + timedelta(minutes=5), now + timedelta(hours=5), now + timedelta(days=1)
    forecast = history.forecast(now, [soon, afternoon, tomorrow])
    assert forecast[0] == pytest.approx(0.3 + (level - 0.3) * (1 - 2.718281828 ** (-5 / 60)), rel=1e-6)
    assert forecast[1] == pytest.approx(level, abs=0.01)
    assert forecast[2] == pytest.approx(climate)


def test_cloud_index_without_any_history_is_the_prior() -> None:
    history = CloudIndexHistory(PARIS)
    now = datetime(2026, 7, 10, 10, tzinfo=UTC)
    assert history.forecast(now, [now + timedelta(hours=h) for h in (1, 30)]) == [PRIOR_INDEX, PRIOR_INDEX]


def _rows(site: m.Site, start: datetime, days: int, values) -> list:
    rows = []
    moment = start
    while moment < start + timedelta(days=days):
        current = values(moment)
        rows.append((moment, current.get))
        moment += STEP
    return rows


def _idle(site: m.Site) -> dict[str, float]:
    """Every power point of what gridctl schedules at 0 (the base load is then the grid's power)."""
    return {address: 0.0 for adapter in site_adapters(site) for address in adapter.power_points()}


def _empty_snapshot(now: datetime) -> Snapshot:
    return Snapshot(now, MappingProxyType({}), MappingProxyType({}))


async def test_warm_up_from_history_gives_the_load_profile_from_the_first_forecast() -> None:
    site = load_site(SITES / "zac-saint-sauveur")
    grid = site.grid.points["power"]

    def values(moment: datetime) -> dict[str, float]:
        local = moment.astimezone(site.tz)
        # Nothing controlled draws: all is base load.
        return {**_idle(site), grid: 40.0 if 7 <= local.hour < 19 else 10.0}

    start = datetime(2026, 7, 6, tzinfo=PARIS).astimezone(UTC)
    forecaster = SignalForecaster()
    assert forecaster.warm_up(site, _rows(site, start - timedelta(days=7), 7, values)) == 7 * 96
    forecasts = await forecaster.forecast(site, _empty_snapshot(start), start, 96, STEP)
    by_hour = {(start + STEP * k).astimezone(site.tz).hour: v for k, v in enumerate(forecasts.base_load_kw)}
    assert by_hour[3] == pytest.approx(10.0, abs=0.5)
    assert by_hour[12] == pytest.approx(40.0, abs=0.5)
    assert grid in observed_points(site)


async def test_pv_forecast_follows_the_measured_sky_and_learns_the_arrays_yield() -> None:
    site = load_site(SITES / "zac-haute-deule")
    array = next(a for a in site.assets if isinstance(a, m.PvArray))
    sensor = array.points["irradiance"]
    start = datetime(2026, 7, 6, tzinfo=PARIS).astimezone(UTC)
    moments = [start - timedelta(days=3) + STEP * k for k in range(3 * 96)]
    clear, _ = solar(site, moments)
    # The sky gives 60 % of clear-sky irradiance; the array makes 90 % of what the model says for it.
    modelled = pv_output_kw(site, array, moments, [0.6] * len(moments), [12.0] * len(moments))
    rows = []
    for moment, ghi, model_kw in zip(moments, clear, modelled, strict=True):
        point_values = {sensor: 0.6 * ghi, array.points["power"]: 0.9 * model_kw}
        if "curtailment_limit" in array.points:
            point_values[array.points["curtailment_limit"]] = 100.0
        rows.append((moment, point_values.get))
    forecaster = SignalForecaster()
    forecaster.warm_up(site, rows)
    assert forecaster.models(site)[array.id].calibration() == pytest.approx(0.9, rel=0.01)
    noon = start.replace(hour=10)  # 12:00 in Lille
    forecasts = await forecaster.forecast(site, _empty_snapshot(start), start, 96, STEP)
    k = int((noon - start) / STEP)
    expected = 0.9 * pv_output_kw(site, array, [noon + STEP / 2], [(3 * 0.6 + PRIOR_INDEX) / 4],
                                                [forecasts.outdoor_temperature_c[k]])[0]
    assert forecasts.pv_kw[array.id][k] == pytest.approx(min(expected, array.inverter_max_power_kw or expected),
                                                        rel=0.01)


def test_a_curtailed_array_does_not_teach_its_yield() -> None:
    site = load_site(SITES / "zac-haute-deule")
    array = next(a for a in site.assets if isinstance(a, m.PvArray))
    assert "curtailment_limit" in array.points
    start = datetime(2026, 7, 6, 6, tzinfo=UTC)
    moments = [start + STEP * k for k in range(24)]
    clear, _ = solar(site, moments)
    rows = [(t, {array.points["irradiance"]: g, array.points["power"]: 1.0,
                 array.points["curtailment_limit"]: 10.0}.get) for t, g in zip(moments, clear, strict=True)]
    forecaster = SignalForecaster()
    forecaster.warm_up(site, rows)
    assert forecaster.models(site)[array.id].calibration() == 1.0


def test_ev_needs_declared_by_the_car_or_driver_are_planned_with_a_margin() -> None:
    charger = m.EvCharger(id="c1", max_current_a=32, points={})
    plugged = datetime(2026, 7, 6, 7, tzinfo=UTC)
    now = plugged + timedelta(minutes=30)
    declared = ev_session(charger, plugged, now, delivered_kwh=2.0, time_to_departure_s=4 * 3600,
                          energy_request_kwh=10.0)
    assert declared.departure == now + timedelta(hours=3)
    assert declared.energy_needed_kwh == 8.0
    undeclared = ev_session(charger, plugged, now, delivered_kwh=2.0, time_to_departure_s=0.0,
                            energy_request_kwh=0.0)
    assert undeclared.departure == plugged + PRIOR_STAY
    assert undeclared.energy_needed_kwh == PRIOR_ENERGY_KWH - 2.0
    # Past the declared need while still drawing: all the charger can give until the car may leave.
    more = ev_session(charger, plugged, now, delivered_kwh=12.0, time_to_departure_s=600.0, energy_request_kwh=10.0)
    assert more.departure == now + timedelta(minutes=15)
    assert more.energy_needed_kwh == pytest.approx(charger.max_power_kw * 0.25)
    # Past the expected stay without a declaration: the same, for the half hour planned.
    later = plugged + PRIOR_STAY + timedelta(minutes=20)
    overstay = ev_session(charger, plugged, later, delivered_kwh=18.0, time_to_departure_s=None, energy_request_kwh=None)
    assert overstay.departure == later + timedelta(minutes=30)
    assert overstay.energy_needed_kwh == pytest.approx(charger.max_power_kw * 0.5)
    # Early in a stay the share asked of a car beyond its expected need stays small.
    early = ev_session(charger, plugged, now, delivered_kwh=18.0, time_to_departure_s=None, energy_request_kwh=None)
    assert early.energy_needed_kwh == STILL_CHARGING_KWH


async def test_a_starting_service_learns_its_forecasts_from_the_stored_history(tmp_path: Path) -> None:
    from gridctl.service.runner import ServiceHost, SiteOptions
    from sim.core import SimClock

    now = datetime(2026, 7, 6, 12, tzinfo=UTC)
    host = ServiceHost([SiteOptions(site=SITES / "zac-saint-sauveur")], str(tmp_path / "h.db"),
                       tmp_path / "spool", clock=SimClock(now))
    service = host.sites[0]
    grid = service.site.grid.points["power"]
    await host.open_history()
    try:
        # Two days of one-minute grid readings: 30 kW by day, 12 kW at night.
        moments = [now - timedelta(days=2) + timedelta(minutes=k) for k in range(2 * 1440)]
        readings = [Reading(grid, moment, 30.0 if 6 <= moment.hour < 18 else 12.0, Quality.GOOD)
                    for moment in moments]
        # What gridctl schedules drew nothing: all of it is base load.
        readings += [Reading(address, moment, 0.0, Quality.GOOD) for address in _idle(service.site)
                     for moment in moments]
        await host.historian.write([SiteReadings(service.site.id, readings)], received_at=now)
        assert await service.warm_up(host.historian) == 2 * 96
        forecasts = await service.forecaster.forecast(service.site, _empty_snapshot(now), now, 96, STEP)
    finally:
        await host.historian.close()
        host.spool.close()
    by_hour = {(now + STEP * k).hour: v for k, v in enumerate(forecasts.base_load_kw)}
    assert by_hour[14] == pytest.approx(30.0, abs=0.5)
    assert by_hour[2] == pytest.approx(12.0, abs=0.5)


def test_a_weather_services_forecast_replaces_the_days_level_and_the_climate() -> None:
    history = CloudIndexHistory(PARIS)
    today = datetime(2026, 7, 10, tzinfo=PARIS)
    _daylight_samples(history, today, 0.3, until_hour=12)
    now = today.replace(hour=12).astimezone(UTC)
    moments = [now + timedelta(minutes=5), now + timedelta(hours=5), now + timedelta(days=1), now + timedelta(hours=14)]
    forecast = history.forecast(now, moments, [0.9, 0.9, 0.8, None])
    assert forecast[0] == pytest.approx(0.3 + (0.9 - 0.3) * (1 - 2.718281828 ** (-5 / 60)), rel=1e-6)
    assert forecast[1] == pytest.approx(0.9, abs=0.01)
    assert forecast[2] == pytest.approx(0.8)
    assert forecast[3] == pytest.approx(history.climate(now))  # the service says nothing: the climate


def test_observing_without_forecasting_learns_in_bounded_batches() -> None:
    site = load_site(SITES / "zac-haute-deule")
    sensor = next(a for a in site.assets if isinstance(a, m.PvArray)).points["irradiance"]
    forecaster = SignalForecaster()
    start = datetime(2026, 7, 6, 4, tzinfo=UTC)
    for k in range(300):
        moment = start + STEP * k
        readings = {sensor: Reading(sensor, moment, 400.0, Quality.GOOD)}
        forecaster.observe(site, Snapshot(moment, MappingProxyType(readings), MappingProxyType({})))
    state = forecaster._state(site)
    assert len(state.pending) < 96
    assert len(state.cloud) > 0


def _snapshot(now: datetime, values: dict[str, float], taken: datetime | None = None,
              quality: Quality = Quality.GOOD) -> Snapshot:
    """Readings of `values` taken at `taken` (now by default), seen by a cycle at `now`; 30 s staleness limit."""
    readings = {a: Reading(a, taken or now, v, quality) for a, v in values.items()}
    devices = {a.partition("/")[0] for a in values}
    return Snapshot(now, MappingProxyType(readings), MappingProxyType(dict.fromkeys(devices, timedelta(seconds=30))))


async def test_at_the_one_minute_dispatch_the_load_history_keeps_two_weeks_of_quarter_hours() -> None:
    site = load_site(SITES / "zac-saint-sauveur")
    grid = site.grid.points["power"]
    idle = _idle(site)

    def load_kw(moment: datetime) -> float:
        local = moment.astimezone(site.tz)
        return (40.0 if 7 <= local.hour < 19 else 10.0) + (5.0 if local.weekday() >= 5 else 0.0)

    forecaster = SignalForecaster()
    start = datetime(2026, 3, 2, tzinfo=PARIS).astimezone(UTC)
    end = start + timedelta(days=16)
    moment = start
    while moment < end:  # one observation a minute, as `gridctl run` dispatches
        forecaster.observe(site, _snapshot(moment, {**idle, grid: load_kw(moment)}))
        moment += timedelta(minutes=1)
    history = forecaster.load_history(site)
    # Two weeks by age at quarter-hour resolution, whatever the cadence (not the last 2,304 minutes).
    assert history.span() == timedelta(days=14)
    assert len(history) == 14 * 96 + 1
    forecasts = await forecaster.forecast(site, _snapshot(end, {**idle, grid: load_kw(end)}), end, 96 * 2, STEP)
    for k, value in enumerate(forecasts.base_load_kw):
        assert value == pytest.approx(load_kw(end + STEP * k + STEP / 2), abs=1e-6)


async def test_stale_bad_and_repeated_readings_are_not_new_observations() -> None:
    site = load_site(SITES / "zac-saint-sauveur")
    grid = site.grid.points["power"]
    idle = _idle(site)
    forecaster = SignalForecaster()
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    # A meter polled every 5 minutes, seen by every 1-minute cycle: 20, 30, 40 kW in the first quarter-hour.
    for minute in range(15):
        taken = start + timedelta(minutes=5 * (minute // 5))
        forecaster.observe(site, _snapshot(start + timedelta(minutes=minute),
                                           {**idle, grid: 20.0 + 10.0 * (minute // 5)}, taken=taken))
    # Then the meter goes silent: its last reading ages past the staleness limit; then it answers bad values.
    for minute in range(15, 30):
        forecaster.observe(site, _snapshot(start + timedelta(minutes=minute), {**idle, grid: 40.0},
                                           taken=start + timedelta(minutes=10)))
    for minute in range(30, 45):
        forecaster.observe(site, _snapshot(start + timedelta(minutes=minute), {**idle, grid: 99.0},
                                           quality=Quality.BAD))
    forecaster.observe(site, _snapshot(start + timedelta(minutes=45), {**idle, grid: 50.0}))
    history = forecaster.load_history(site)
    # One quarter-hour learnt, the mean of the three readings it had; none from the silent half hour.
    assert len(history) == 1
    forecasts = await forecaster.forecast(site, _snapshot(start + timedelta(minutes=46), {}),
                                          start + timedelta(hours=1), 4, STEP)
    assert forecasts.base_load_kw[0] == pytest.approx(30.0)


async def test_forecasts_are_scored_by_lead_time_once_the_actuals_are_in() -> None:
    site = load_site(SITES / "zac-saint-sauveur")
    grid = site.grid.points["power"]
    idle = _idle(site)
    forecaster = SignalForecaster()
    start = datetime(2026, 3, 2, tzinfo=PARIS).astimezone(UTC)
    forecaster.warm_up(site, _rows(site, start - timedelta(days=7), 7, lambda _t: {**idle, grid: 40.0}))
    await forecaster.forecast(site, _snapshot(start, {}), start, 96, STEP)
    # The load steps up to 50 kW: every forecast quarter-hour is 10 kW under (the level correction aside).
    moment = start
    while moment < start + timedelta(hours=8):
        forecaster.observe(site, _snapshot(moment, {**idle, grid: 50.0}))
        moment += timedelta(minutes=1)
    figures = {(f.quantity, f.horizon): f for f in forecaster.report(site).accuracy.figures()}
    first = figures[("load", "1h")]
    assert first.samples == 4 and first.mae_kw == pytest.approx(10.0) and first.bias_kw == pytest.approx(-10.0)
    assert first.nrmse == pytest.approx(10.0 / 50.0)
    assert figures[("load", "6h")].samples == 20
    assert figures[("load", "24h")].samples == 7  # 6 h to 7 h 45: the last quarter-hour is still under way
    assert figures[("pv", "1h")].samples == 0
    # /metrics shows the last week's figures, one series per site, quantity and lead time.
    metrics = ServiceMetrics()
    metrics.observe_forecasts(site.id, forecaster.report(site), moment)
    text = metrics.render().decode()
    assert 'gridctl_forecast_mae_kw{horizon="1h",quantity="load",site="zac-saint-sauveur"} 10.0' in text
    assert 'gridctl_forecast_samples{horizon="6h",quantity="load",site="zac-saint-sauveur"} 20.0' in text
    assert text.count("gridctl_forecast_nrmse{") == 6
