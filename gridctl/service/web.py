"""Serve the service's HTTP side: /metrics (Prometheus) and the API and web pages."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

if TYPE_CHECKING:
    from gridctl.history import Historian
    from gridctl.service.runner import SiteService


def build_app(services: Sequence[SiteService], historian: Historian) -> FastAPI:
    app = FastAPI(title="gridctl")
    metrics = services[0].metrics if services else None

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body = metrics.render() if metrics else b""
        return Response(body, media_type=metrics.content_type if metrics else "text/plain")

    return app


async def serve(services: Sequence[SiteService], historian: Historian, host: str, port: int,
                stop: asyncio.Event) -> None:
    """Serve until `stop` is set."""
    config = uvicorn.Config(build_app(services, historian), host=host, port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
