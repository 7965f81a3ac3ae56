"""A weather provider's forecasts over Open-Meteo's forecast API: the site's `weather` in its site file.

One request per refresh (`refresh_min`) asks for hourly `temperature_2m` (the value at the hour) and
`shortwave_radiation` (the mean of the preceding hour) in UTC, three days from today's midnight; the
answer is kept and interpolated to the instants the forecaster asks about. A provider that is down,
slow or answers nonsense is retried with back-off; meanwhile the last forecast serves while it is
younger than `max_age_h`, then the service forecasts from its own measurements (`forecast` returns
None). `status` tells whether it works, for an operator's alarm.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from gridctl.alarms import AlarmBook, AlarmKind, Severity
from gridctl.config import models as m
from gridctl.forecast.weather import WeatherForecast

log = logging.getLogger(__name__)
FORECAST_DAYS = 3
FIRST_RETRY = timedelta(minutes=5)
LONGEST_RETRY = timedelta(hours=1)
USER_AGENT = "gridctl (energy management of eco-districts)"
# Largest answer read from a provider: three days of two hourly variables take a few kB.
MAX_BODY_BYTES = 1_000_000

Fetch = Callable[[str, float], bytes]


class ProviderError(Exception):
    """The provider did not give a usable forecast (down, slow, or an answer that is not one)."""


@dataclass(frozen=True)
class HourlyForecast:
    """One provider answer: hourly instants (UTC), temperature at each, and mean irradiance of the hour before."""

    fetched_at: datetime
    hours: list[datetime]
    temperature_c: list[float]
    ghi_w_m2: list[float]


@dataclass(frozen=True)
class ProviderStatus:
    ok: bool
    last_success: datetime | None
    last_error: str | None
    failures: int


def _http_get(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read(MAX_BODY_BYTES + 1)
    except urllib.error.HTTPError as error:
        body = error.read(MAX_BODY_BYTES)
        reason = ""
        try:
            reason = json.loads(body).get("reason", "")
        except (ValueError, AttributeError):
            pass
        raise ProviderError(f"HTTP {error.code}{': ' + reason if reason else ''}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise ProviderError(f"{type(error).__name__}: {getattr(error, 'reason', error)}") from None


def parse(body: bytes, fetched_at: datetime) -> HourlyForecast:
    """The hourly series of an Open-Meteo answer; ProviderError says what is wrong with one that is not."""
    if len(body) > MAX_BODY_BYTES:
        raise ProviderError(f"answer larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as error:
        raise ProviderError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ProviderError("not a JSON object")
    if document.get("error"):
        raise ProviderError(f"provider error: {document.get('reason', 'no reason given')}")
    hourly = document.get("hourly")
    if not isinstance(hourly, dict):
        raise ProviderError("no 'hourly' object")
    times, temperature, ghi = hourly.get("time"), hourly.get("temperature_2m"), hourly.get("shortwave_radiation")
    if not all(isinstance(series, list) for series in (times, temperature, ghi)):
        raise ProviderError("'hourly' lacks time, temperature_2m or shortwave_radiation")
    assert isinstance(times, list) and isinstance(temperature, list) and isinstance(ghi, list)
    if not times or not len(times) == len(temperature) == len(ghi):
        raise ProviderError(f"series of unequal lengths: {len(times)} times, {len(temperature)} temperatures, "
                            f"{len(ghi)} irradiances")
    units = document.get("hourly_units", {})
    if units.get("temperature_2m", "°C") != "°C" or units.get("shortwave_radiation", "W/m²") not in ("W/m²", "W/m2"):
        raise ProviderError(f"unexpected units {units}")
    offset = timedelta(seconds=int(document.get("utc_offset_seconds", 0)))
    hours, temps, irradiance = [], [], []
    for text, t, g in zip(times, temperature, ghi, strict=True):
        if t is None or g is None:
            continue  # the provider has no value for this hour (e.g. beyond its model's horizon)
        try:
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC) - offset
        except (TypeError, ValueError):
            raise ProviderError(f"bad time {text!r}") from None
        if not (isinstance(t, int | float) and isinstance(g, int | float)) or not (-90 < t < 70 and 0 <= g < 1500):
            raise ProviderError(f"implausible values at {text}: {t} °C, {g} W/m²")
        hours.append(moment)
        temps.append(float(t))
        irradiance.append(float(g))
    if len(hours) < 2 or any(b <= a for a, b in itertools.pairwise(hours)):
        raise ProviderError("fewer than two usable hours, or hours out of order")
    return HourlyForecast(fetched_at, hours, temps, irradiance)


def _interpolate(xs: list[float], ys: list[float], x: float) -> float:
    """Linear within the series, the nearest end value outside it."""
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        return ys[-1]
    f = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return (1.0 - f) * ys[i - 1] + f * ys[i]


class OpenMeteoClient:
    """`gridctl.forecast.weather.WeatherService` over an Open-Meteo-format provider, cached and fault-tolerant."""

    def __init__(self, provider: m.WeatherProvider, latitude: float, longitude: float, *,
                 fetch: Fetch = _http_get) -> None:
        self.provider = provider
        self.latitude = latitude
        self.longitude = longitude
        self._fetch = fetch
        self._cached: HourlyForecast | None = None
        self._next_attempt: datetime | None = None
        self._failures = 0
        self._last_error: str | None = None
        self._last_success: datetime | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def for_site(cls, site: m.Site) -> OpenMeteoClient | None:
        if site.weather is None:
            return None
        return cls(site.weather, site.location.latitude, site.location.longitude)

    @property
    def request_url(self) -> str:
        query = urlencode({"latitude": f"{self.latitude:.4f}", "longitude": f"{self.longitude:.4f}",
                           "hourly": "temperature_2m,shortwave_radiation", "timezone": "UTC",
                           "forecast_days": FORECAST_DAYS})
        return f"{self.provider.url}?{query}"

    @property
    def status(self) -> ProviderStatus:
        return ProviderStatus(self._failures == 0 and self._last_success is not None, self._last_success,
                              self._last_error, self._failures)

    async def forecast(self, now: datetime, moments: Sequence[datetime]) -> WeatherForecast | None:
        async with self._lock:
            await self._refresh(now)
            cached = self._cached
        if cached is None or now - cached.fetched_at > timedelta(hours=self.provider.max_age_h):
            return None
        hour_s = [h.timestamp() for h in cached.hours]
        # Irradiance is the mean of the hour before each stamp: it belongs to the middle of that hour.
        ghi_s = [s - 1800.0 for s in hour_s]
        ghi = [max(_interpolate(ghi_s, cached.ghi_w_m2, t.timestamp()), 0.0) for t in moments]
        temperature = [_interpolate(hour_s, cached.temperature_c, t.timestamp()) for t in moments]
        return WeatherForecast(cached.fetched_at, ghi, temperature)

    async def _refresh(self, now: datetime) -> None:
        refresh = timedelta(minutes=self.provider.refresh_min)
        fresh = self._cached is not None and now - self._cached.fetched_at < refresh
        if fresh or (self._next_attempt is not None and now < self._next_attempt):
            return
        timeout = self.provider.timeout_s
        try:
            body = await asyncio.wait_for(asyncio.to_thread(self._fetch, self.request_url, timeout), timeout + 1.0)
            self._cached = parse(body, now)
        except (ProviderError, TimeoutError) as error:
            self._failed(now, str(error) or "no answer in time")
            return
        if self._failures:
            log.info("weather provider %s answers again after %d failed attempts", self.provider.url, self._failures)
        self._failures, self._last_error, self._next_attempt, self._last_success = 0, None, None, now

    def _failed(self, now: datetime, reason: str) -> None:
        self._failures += 1
        self._last_error = reason
        backoff = min(FIRST_RETRY * 2 ** (self._failures - 1), LONGEST_RETRY)
        self._next_attempt = now + backoff
        using = "the last forecast" if self._cached is not None and \
            now - self._cached.fetched_at <= timedelta(hours=self.provider.max_age_h) else "the site's own measurements"
        # One line per outage, then one an hour or so: the provider being down is not news every cycle.
        if self._failures == 1 or math.log2(self._failures).is_integer():
            log.warning("weather provider %s failed (%s, attempt %d); forecasting from %s, next try in %s",
                        self.provider.url, reason, self._failures, using, backoff)

    def report(self, alarms: AlarmBook, site_id: str, now: datetime) -> None:
        """Raise the site's weather alarm while the provider fails, clear it once it answers."""
        status = self.status
        if status.failures:
            alarms.raise_alarm(AlarmKind.WEATHER_PROVIDER, site_id,
                               f"weather provider {self.provider.url} not answering ({status.last_error}); "
                               f"{status.failures} failed attempts", now, Severity.WARNING)
        elif status.ok:
            alarms.clear(AlarmKind.WEATHER_PROVIDER, site_id, now)
