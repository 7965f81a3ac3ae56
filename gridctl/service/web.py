"""Serve the service's HTTP side: the API and web pages, and /metrics in Prometheus' format."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from gridctl.api.app import create_app
from gridctl.api.store import StoreAuditSink
from gridctl.service.runner import ServiceHost

log = logging.getLogger(__name__)


async def attach_api(host: ServiceHost) -> FastAPI:
    """The API over the host's sites, its database open, its audit log the arbiters' sink, and the
    policies and demand-response events stored earlier back in force."""
    app = build_app(host)
    store = app.state.context.store
    await store.db.open()
    audit = StoreAuditSink(store)
    now = host.clock.now()
    for service in host.sites:
        controller = service.controller
        controller.audit = audit
        controller.arbiter.audit = audit
        version = await store.policy(service.site.id)
        if version is not None:
            controller.policy = version
        for record in await store.demand_responses(service.site.id):
            if record.event.end > now:
                await controller.demand_response(record.event)
    return app


def build_app(host: ServiceHost) -> FastAPI:
    runtimes = {service.site.id: service.controller for service in host.sites}
    app = create_app(host.historian, runtimes, database=host.db, clock=host.clock.now,
                     clock_speed=lambda: getattr(host.clock, "speed", None) or 1.0)
    metrics = host.metrics

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

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
        self._server = _Server(uvicorn.Config(app, host=address, port=port, log_config=None, access_log=False))
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
                              after_stop: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve the API and run the service until SIGINT or SIGTERM, then stop in order: the service first
    (its last writes, relinquishing leases, are audited in the database), then the web server."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    web = WebServer(app, address, port)
    await web.start()
    await host.start()
    announce()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await host.stop()
        if after_stop is not None:
            await after_stop()
        await web.stop()
