"""The weather provider client against a real HTTP server speaking Open-Meteo's format (the simulated one)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from gridctl.alarms import AlarmBook, AlarmKind
from gridctl.config import models as m
from gridctl.forecast.openmeteo import OpenMeteoClient, ProviderError, parse
from sim.core import SimClock
from sim.physics.nwp import NumericalForecast
from sim.physics.weather import Weather
from sim.weather_server import WeatherServer

NOON = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)


def _setup(timeout_s: float = 5.0, max_age_h: float = 6.0) -> tuple[SimClock, Weather, WeatherServer]:
    clock = SimClock(NOON)
    weather = Weather(50.7, 3.16, seed=4)
    return clock, weather, WeatherServer(NumericalForecast(weather, 4), clock)


def _client(server: WeatherServer, **settings: float) -> OpenMeteoClient:
    return OpenMeteoClient(m.WeatherProvider(url=server.url, **settings), 50.7, 3.16)


async def test_forecast_is_read_cached_and_interpolated() -> None:
    clock, weather, server = _setup()
    async with server:
        client = _client(server)
        moments = [NOON + timedelta(minutes=30 * k) for k in range(48)]
        forecast = await client.forecast(NOON, moments)
        assert forecast is not None and server.requests == 1 and client.status.ok
        assert len(forecast.ghi_w_m2) == len(forecast.temperature_c) == 48
        # Day and night: irradiance where the sun is up, none at midnight; temperatures near the truth.
        assert forecast.ghi_w_m2[0] > 50 and forecast.ghi_w_m2[28] == pytest.approx(0.0, abs=1.0)
        assert all(abs(t - weather.temperature_c(x)) < 8.0 for t, x in zip(forecast.temperature_c, moments,
                                                                          strict=True))
        # Within the refresh interval the answer is reused; after it, fetched again.
        await client.forecast(NOON + timedelta(minutes=30), moments)
        assert server.requests == 1
        clock.advance(timedelta(hours=1))
        await client.forecast(NOON + timedelta(hours=1), moments)
        assert server.requests == 2


async def test_a_provider_down_keeps_the_last_forecast_a_while_then_none_and_an_alarm(
        caplog: pytest.LogCaptureFixture) -> None:
    _clock, _weather, server = _setup()
    alarms = AlarmBook()
    async with server:
        client = _client(server, max_age_h=3.0)
        moments = [NOON + timedelta(hours=h) for h in range(24)]
        assert await client.forecast(NOON, moments) is not None
        server.failing = True
        later = NOON + timedelta(hours=2)
        with caplog.at_level(logging.WARNING, logger="gridctl.forecast.openmeteo"):
            kept = await client.forecast(later, moments)
        assert kept is not None and kept.issued_at == NOON
        assert "HTTP 503" in caplog.text and "forecasting from the last forecast" in caplog.text
        assert not client.status.ok and client.status.failures == 1
        client.report(alarms, "site-a", later)
        assert alarms.is_active(AlarmKind.WEATHER_PROVIDER, "site-a")
        # Retries back off: a call right after the failure does not hammer the provider.
        before = server.requests
        await client.forecast(later + timedelta(minutes=1), moments)
        assert server.requests == before
        # Past max_age the service forecasts on its own.
        assert await client.forecast(NOON + timedelta(hours=4), moments) is None
        server.failing = False
        assert await client.forecast(NOON + timedelta(hours=5), moments) is not None
        client.report(alarms, "site-a", NOON + timedelta(hours=5))
        assert not alarms.is_active(AlarmKind.WEATHER_PROVIDER, "site-a")


async def test_a_slow_provider_times_out_and_counts_as_down() -> None:
    _clock, _weather, server = _setup()
    async with server:
        server.delay_s = 2.0
        client = _client(server, timeout_s=0.3)
        assert await client.forecast(NOON, [NOON]) is None
        assert client.status.failures == 1 and "timed out" in (client.status.last_error or "").lower()


async def test_a_dead_address_counts_as_down() -> None:
    _clock, _weather, server = _setup()
    async with server:
        url = server.url
    client = OpenMeteoClient(m.WeatherProvider(url=url, timeout_s=2.0), 50.7, 3.16)
    assert await client.forecast(NOON, [NOON]) is None
    assert client.status.failures == 1


def test_provider_errors_and_bad_answers_are_named() -> None:
    _clock, _weather, server = _setup()
    status, body = server.answer({"latitude": ["50.7"], "longitude": ["3.1"], "hourly": ["temperature_2m,bogus"]})
    assert status == 400 and body["error"] is True and "bogus" in body["reason"]
    with pytest.raises(ProviderError, match=r"provider error: .*bogus"):
        parse(__import__("json").dumps(body).encode(), NOON)
    with pytest.raises(ProviderError, match="not JSON"):
        parse(b"<html>bad gateway</html>", NOON)
    with pytest.raises(ProviderError, match="unequal lengths"):
        parse(b'{"hourly": {"time": ["2026-06-15T00:00"], "temperature_2m": [], "shortwave_radiation": []}}', NOON)
    with pytest.raises(ProviderError, match="implausible"):
        parse(b'{"hourly": {"time": ["2026-06-15T00:00", "2026-06-15T01:00"], "temperature_2m": [12, 999],'
              b' "shortwave_radiation": [0, 0]}}', NOON)


def test_an_open_meteo_answer_is_read_in_utc_with_irradiance_for_the_hour_before() -> None:
    # The shape api.open-meteo.com documents for /v1/forecast (hourly arrays beside a time array).
    body = (b'{"latitude":50.7,"longitude":3.16,"generationtime_ms":0.05,"utc_offset_seconds":0,'
            b'"timezone":"GMT","timezone_abbreviation":"GMT","elevation":21.0,'
            b'"hourly_units":{"time":"iso8601","temperature_2m":"\xc2\xb0C","shortwave_radiation":"W/m\xc2\xb2"},'
            b'"hourly":{"time":["2026-06-15T10:00","2026-06-15T11:00","2026-06-15T12:00"],'
            b'"temperature_2m":[18.0,20.0,21.0],"shortwave_radiation":[500.0,600.0,null]}}')
    forecast = parse(body, NOON)
    assert forecast.hours == [datetime(2026, 6, 15, 10, tzinfo=UTC), datetime(2026, 6, 15, 11, tzinfo=UTC)]
    assert forecast.ghi_w_m2 == [500.0, 600.0]
