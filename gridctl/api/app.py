"""The FastAPI application: `/api/v1` for residents, operators, energy managers and open data, and the
web pages under `/ui/`."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridctl.api.auth import SESSION_COOKIE
from gridctl.api.context import ApiContext
from gridctl.api.db import Busy, Conflict, Database, open_database
from gridctl.api.ratelimit import RateLimiter, client_keys
from gridctl.api.responses import AUTHENTICATED, COMMON, with_validation_errors_as_answered
from gridctl.api.routers import account, managers, opendata, operators, residents
from gridctl.api.settings import ApiSettings
from gridctl.api.store import ApiStore
from gridctl.config.models import Site
from gridctl.history import Historian, HistorianUnavailable
from gridctl.history.base import utc_now
from gridctl.runtime import SiteRuntime

API_PREFIX = "/api/v1"
# The pages, each at /ui/<name> (and /ui/<name>.html).
PAGES = ("login", "activate", "resident", "operator", "manager")
# The pages load nothing from elsewhere and may not be framed; uPlot sets inline styles.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; "
                                 b"form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for error in exc.errors():
        clean = {k: v for k, v in error.items() if k in ("type", "loc", "msg")}
        errors.append(clean)
    message = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return JSONResponse({"detail": errors, "message": message}, status_code=422)


# Seconds a client is asked to wait while the database is unreachable (the service probes it every second).
UNAVAILABLE_RETRY_AFTER_S = 5


async def _database_unavailable(_request: Request, exc: HistorianUnavailable) -> JSONResponse:
    return JSONResponse({"detail": f"the history database is unreachable ({exc}); try again later"},
                        status_code=503, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})


class SecurityHeadersMiddleware:
    """Adds the pages' security headers to every response under /ui/."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/ui"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RateLimitMiddleware:
    """429 with Retry-After when a client exceeds its bucket: one per token (else per address), and one per
    address whatever the token."""

    def __init__(self, app: Any, limiter: RateLimiter, per_address: RateLimiter, prefix: str) -> None:
        self.app = app
        self.limiter = limiter
        self.per_address = per_address
        self.prefix = prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        address, key = client_keys(scope, SESSION_COOKIE)
        wait = self.per_address.take(address)
        if wait <= 0:
            wait = self.limiter.take(key)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "too many requests; slow down"}).encode()
        await send({
            "type": "http.response.start",
            "status": 429,
            "headers": [(b"content-type", b"application/json"), (b"retry-after", str(max(1, round(wait))).encode()),
                        (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})


# What FastAPI answers (400) to a body it cannot decode.
_UNDECODABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 400 and exc.detail == _UNDECODABLE_BODY:
        # A problem with the body like any other, so a 422 naming it.
        detail = [{"type": "body_invalid", "loc": ["body"], "msg": str(exc.detail)}]
        return JSONResponse({"detail": detail, "message": f"body: {exc.detail}"}, status_code=422)
    if exc.status_code == 405:
        # The router names the methods of the one route it tried; the path may have others.
        allowed = _methods_of(request.app, request.url.path)
        headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)} if allowed else exc.headers
        return JSONResponse({"detail": exc.detail}, status_code=405, headers=headers)
    return await http_exception_handler(request, exc)


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI schema documents for a concrete path (its `{parameters}` matching a segment)."""
    table = getattr(app.state, "methods_by_path", None)
    if table is None:
        table = app.state.methods_by_path = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"),
             {m.upper() for m in operations})
            for template, operations in app.openapi()["paths"].items()
        ]
    return sorted(set().union(*(methods for pattern, methods in table if pattern.match(path))))


async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
    return JSONResponse({"detail": f"conflicts with what is stored: {exc}"}, status_code=409)


async def _busy(_request: Request, exc: Busy) -> JSONResponse:
    return JSONResponse({"detail": f"the database is busy ({exc}); try again"}, status_code=503,
                        headers={"Retry-After": "1"})


def _page(path: str) -> Callable[[], Any]:
    async def page() -> FileResponse:
        return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

    return page


def create_app(
    historian: Historian,
    runtimes: Mapping[str, SiteRuntime],
    settings: ApiSettings | None = None,
    *,
    database: str | Database | None = None,
    sites: Mapping[str, Site] | None = None,
    clock: Callable[[], datetime] = utc_now,
    clock_speed: Callable[[], float] = lambda: 1.0,
) -> FastAPI:
    """The API over an open historian and the live runtimes per site.

    `database` is where the API keeps its own tables (users, consent, audit, policies): by default the
    historian's own database (its SQLite path or PostgreSQL DSN), already upgraded by `gridctl db upgrade`.
    `sites` adds sites served from history only, without a live runtime. `clock_speed` is how many of
    `clock`'s seconds pass per wall-clock second (a simulation runs faster), so ages can be told in wall time.
    """
    settings = settings or ApiSettings()
    if database is None:
        database = getattr(historian, "dsn", None) or getattr(historian, "path", None)
        if database is None:
            raise ValueError("pass `database`: the historian does not say where it stores its data")
    db = open_database(database) if isinstance(database, str) else database
    ctx = ApiContext(historian=historian, store=ApiStore(db), runtimes=runtimes, settings=settings, clock=clock,
                     extra_sites=dict(sites or {}), clock_speed=clock_speed)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await db.open()
        try:
            yield
        finally:
            await db.close()

    app = FastAPI(
        title="gridctl",
        version="1",
        description="Residents' consumption, operators' live view and control, energy managers' policies, "
                    "and open data for the eco-district's sites.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        # FastAPI's documentation pages load their scripts from a CDN; gridctl serves nothing that does.
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = ctx
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_validation_errors_as_answered(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HistorianUnavailable, _database_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Conflict, _conflict)  # type: ignore[arg-type]
    app.add_exception_handler(Busy, _busy)  # type: ignore[arg-type]
    # Signing in needs no token; open data neither. Every operation may answer 503 while the database is
    # away: those reading or writing it, and every authenticated one for a token or session not seen before.
    app.include_router(account.router, prefix=API_PREFIX, responses=COMMON)
    for router in (residents.router, operators.router, managers.router):
        app.include_router(router, prefix=API_PREFIX, responses={**COMMON, **AUTHENTICATED})
    app.include_router(opendata.router, prefix=API_PREFIX, responses=COMMON)
    static = files("gridctl.api") / "static"
    for name in PAGES:
        app.add_api_route(f"/ui/{name}", _page(str(static / f"{name}.html")), include_in_schema=False)

    @app.get("/", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/login")

    app.mount("/ui", StaticFiles(directory=str(static), html=False), name="ui")

    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(settings.rate_per_second, settings.rate_burst),
                       per_address=RateLimiter(settings.address_rate_per_second, settings.address_rate_burst),
                       prefix=API_PREFIX)
    return app
