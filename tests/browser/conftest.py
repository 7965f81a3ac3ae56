"""The API and its pages served over HTTP on loopback, and Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from gridctl.config.models import Site
from tests.api.conftest import Api, make_api
from tests.api.support import ROOT, build_history, copy_history, load

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def site() -> Site:
    return load()


@pytest.fixture(scope="session")
def history_template(tmp_path_factory: pytest.TempPathFactory, site: Site) -> Path:
    path = tmp_path_factory.mktemp("history") / "template.sqlite"
    asyncio.run(build_history(path, site))
    return path


@dataclass
class Served:
    api: Api
    base_url: str


@pytest.fixture
async def served(tmp_path: Path, history_template: Path, site: Site) -> AsyncIterator[Served]:
    api, app = await make_api(copy_history(history_template, tmp_path / "gridctl.sqlite"), site)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "the API server did not start"
    try:
        yield Served(api, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task
        sock.close()
        await api.client.aclose()
        await api.ctx.store.db.close()
        await api.historian.close()


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup-browser.sh", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser, request: pytest.FixtureRequest):
    context = await browser.new_context(viewport={"width": 1280, "height": 1400})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
