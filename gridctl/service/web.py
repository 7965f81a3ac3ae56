"""Serve the service's HTTP side: the API and web pages, and /metrics in Prometheus' format."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from gridctl.api.app import create_app
from gridctl.api.policies import restore
from gridctl.api.ratelimit import bearer_token
from gridctl.runtime import SiteRuntime
from gridctl.service.runner import ServiceHost, running_tasks

log = logging.getLogger(__name__)
# A stop still under way after this long says what it waits for (the parts each have their own bounds).
STOP_REPORT_S = 30.0
# Open HTTP connections get this long to finish their request when stopping.
GRACEFUL_HTTP_S = 5.0


@dataclass(frozen=True)
class MetricsAccess:
    """How /metrics is reached: on the API's listener or on its own (`listen`), with or without a token."""

    token: str | None = None
    listen: tuple[str, int] | None = None

    @staticmethod
    def parse_listen(text: str) -> tuple[str, int]:
        """`HOST:PORT` (IPv6 in brackets: `[::1]:9100`)."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not HOST:PORT")
        return host.strip("[]"), int(port)


async def attach_api(host: ServiceHost, metrics: MetricsAccess | None = None) -> FastAPI:
    """The API over the host's sites, its database open, and the policies and demand-response events
    stored earlier back in force (a stored version that no longer validates is never used: see
    `gridctl.api.policies.restore`). The write audit reaches the database through the host's journal
    shipper, never from the arbiters themselves."""
    app = build_app(host, metrics)
    store = app.state.context.store
    await store.db.open()
    now = host.clock.now()
    # Sharing sites with other instances, a site's policy is read when this instance takes it.
    for service in host.sites if host.cluster is None else ():
        controller = service.controller
        await restore(store, controller, now)
    return app


def build_app(host: ServiceHost, metrics: MetricsAccess | None = None) -> FastAPI:
    runtimes: dict[str, SiteRuntime] = (
        dict(host.cluster.handles) if host.cluster is not None
        else {service.site.id: service.controller for service in host.sites})
    app = create_app(host.historian, runtimes, database=host.db, clock=host.clock.now,
                     clock_speed=lambda: getattr(host.clock, "speed", None) or 1.0)
    access = metrics or MetricsAccess()
    if access.listen is None:
        add_metrics(app, host, access.token)
    return app


def add_metrics(app: FastAPI, host: ServiceHost, token: str | None) -> None:
    """/metrics in Prometheus' format; with a token, only for `Authorization: Bearer <token>`."""
    metrics = host.metrics

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        if token is not None:
            given = bearer_token(request.headers.get("authorization", "").encode("latin-1"))
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                return Response("a bearer token is required\n", status_code=401, media_type="text/plain",
                                headers={"WWW-Authenticate": "Bearer"})
        return Response(metrics.render(), media_type=metrics.content_type)


def metrics_app(host: ServiceHost, token: str | None) -> FastAPI:
    """/metrics alone, for a listener of its own (an internal interface, say)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    add_metrics(app, host, token)
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service stops it, after relinquishing its leases."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The HTTP server as a task: started (listening) before the caller announces its URLs."""

    def __init__(self, app: FastAPI, address: str, port: int) -> None:
        # uvicorn's loggers go through gridctl's (see logs.configure), not handlers of their own.
        self._server = _Server(uvicorn.Config(app, host=address, port=port, log_config=None, access_log=False,
                                              timeout_graceful_shutdown=GRACEFUL_HTTP_S))
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        self._task = asyncio.create_task(self._server.serve())
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the web server stopped at start")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the web server did not start")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


async def serve_until_stopped(host: ServiceHost, app: FastAPI, address: str, port: int, *,
                              announce: Callable[[], None] = lambda: None,
                              after_stop: Callable[[], Awaitable[None]] | None = None,
                              metrics: MetricsAccess | None = None) -> None:
    """Serve the API (and /metrics on its own listener when asked) and run the service until SIGINT or
    SIGTERM, then stop in order: the service first (its last writes, relinquishing leases, are journalled
    and shipped to the database), then the web servers."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers = [WebServer(app, address, port)]
    if metrics is not None and metrics.listen is not None:
        servers.append(WebServer(metrics_app(host, metrics.token), *metrics.listen))
    for server in servers:
        await server.start()
    await host.start()
    announce()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        # A second Ctrl-C leaves at once: what the service must keep (write journal, readings spool) is on disk.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _leave_now)
        report = loop.call_later(STOP_REPORT_S, _report_stop_under_way)
        try:
            started = loop.time()
            await host.stop()
            log.info("service stopped in %.1f s", loop.time() - started)
            if after_stop is not None:
                await after_stop()
            for server in servers:
                await server.stop()
            log.info("stopped in %.1f s", loop.time() - started)
        finally:
            report.cancel()


def _leave_now() -> None:
    log.warning("stopping at once (second signal): the write journal and the spool ship at the next start")
    logging.shutdown()
    os._exit(130)


def _report_stop_under_way() -> None:
    threads = []
    for thread_id, frame in sys._current_frames().items():
        where = " < ".join(f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_stack(frame, limit=6)))
        threads.append(f"  thread {thread_id}: {where}")
    log.warning("still stopping after %.0f s (Ctrl-C again stops at once); tasks:\n%s\nthreads:\n%s", STOP_REPORT_S,
                running_tasks(), "\n".join(threads))
