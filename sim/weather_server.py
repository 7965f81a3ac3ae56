"""A weather provider on loopback that speaks Open-Meteo's forecast API, forecasting the simulated sky.

`GET /v1/forecast?latitude=..&longitude=..&hourly=temperature_2m,shortwave_radiation&timezone=UTC
[&forecast_days=N][&past_days=M]` answers as api.open-meteo.com does: hourly values from midnight
UTC of today (minus `past_days`), `shortwave_radiation` the mean of the preceding hour, `temperature_2m`
the value at the hour, taken from the newest run of `sim.physics.nwp` published by the simulated
clock's now. Bad parameters get HTTP 400 with `{"error": true, "reason": ...}`. Tests can make it
fail (`failing`) or answer late (`delay_s`) to exercise a client's timeouts and fallbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, time, timedelta
from urllib.parse import parse_qs, urlsplit

from sim.core import Clock
from sim.physics.nwp import NumericalForecast

log = logging.getLogger(__name__)
VARIABLES = {"temperature_2m": "°C", "shortwave_radiation": "W/m²"}
MAX_DAYS = 16


class WeatherServer:
    def __init__(self, forecast: NumericalForecast, clock: Clock, host: str = "127.0.0.1", port: int = 0) -> None:
        self.forecast = forecast
        self.clock = clock
        self.host = host
        self.port = port
        self.failing = False
        self.delay_s = 0.0
        self.requests = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1/forecast"

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def __aenter__(self) -> WeatherServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _version = request_line.split(" ", 2)
            self.requests += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.failing:
                status, body = 503, {"error": True, "reason": "service unavailable"}
            elif method != "GET" or urlsplit(target).path != "/v1/forecast":
                status, body = 404, {"error": True, "reason": f"no such endpoint: {method} {target}"}
            else:
                status, body = self.answer(parse_qs(urlsplit(target).query))
            payload = json.dumps(body).encode()
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
                         f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ValueError):
            pass  # a client that went away or sent garbage gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def answer(self, query: dict[str, list[str]]) -> tuple[int, dict]:
        """Status and JSON body for the query parameters of one request."""
        try:
            latitude = float(query["latitude"][0])
            longitude = float(query["longitude"][0])
        except (KeyError, ValueError):
            return 400, {"error": True, "reason": "Parameter 'latitude' and 'longitude' must be floating point numbers"}
        hourly = [v for value in query.get("hourly", []) for v in value.split(",") if v]
        unknown = [v for v in hourly if v not in VARIABLES]
        if unknown:
            return 400, {"error": True, "reason": f"Cannot initialize WeatherVariable from invalid String value "
                                                   f"{unknown[0]} for key hourly"}
        if query.get("timezone", ["GMT"])[0] not in ("UTC", "GMT"):
            return 400, {"error": True, "reason": "only timezone=UTC is served by the simulated provider"}
        try:
            forecast_days = int(query.get("forecast_days", ["7"])[0])
            past_days = int(query.get("past_days", ["0"])[0])
        except ValueError:
            return 400, {"error": True, "reason": "forecast_days and past_days must be integers"}
        if not (0 <= forecast_days <= MAX_DAYS and 0 <= past_days <= 92):
            return 400, {"error": True, "reason": f"forecast_days must be within 0 and {MAX_DAYS}"}
        now = self.clock.now().astimezone(UTC)
        run = self.forecast.latest_run(now)
        first = datetime.combine(now.date(), time(0), tzinfo=UTC) - timedelta(days=past_days)
        hours = [first + timedelta(hours=h) for h in range((forecast_days + past_days) * 24)]
        series: dict[str, list] = {"time": [h.strftime("%Y-%m-%dT%H:%M") for h in hours]}
        for variable in hourly:
            if variable == "temperature_2m":
                series[variable] = [round(self.forecast.temperature_c(run, h), 1) for h in hours]
            else:
                series[variable] = [round(self.forecast.ghi_preceding_hour_w_m2(run, h), 1) for h in hours]
        return 200, {
            "latitude": round(latitude, 4), "longitude": round(longitude, 4), "generationtime_ms": 0.1,
            "utc_offset_seconds": 0, "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": 20.0,
            "hourly_units": {"time": "iso8601", **{v: VARIABLES[v] for v in hourly}}, "hourly": series,
        }
