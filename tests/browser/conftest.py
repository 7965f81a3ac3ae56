"""The API and its pages served over HTTP on loopback, and Debian's headless Chromium driven by Playwright.
Screenshots go to artifacts/screenshots/ (git-ignored); axe-core comes from tests/browser/axe (installed
by scripts/setup-browser.sh from its lock file)."""

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
from gridctl.history.base import utc_now
from tests.api.conftest import Api, make_api
from tests.api.support import ROOT, build_history, copy_history, load

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--lang=fr-FR", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
AXE = ROOT / "tests" / "browser" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
# Each role's password for the pages (the API tests' users, given a password here).
PASSWORDS = {"resident": "Rue-de-Cambrai-59000", "operator": "Silo-Union-Tourcoing", "manager": "Haute-Deule-Lomme-1"}


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
    for name, password in PASSWORDS.items():
        await api.ctx.signin.set_password(await api.ctx.store.user(name), password, utc_now())
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


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run scripts/setup-browser.sh", pytrace=False)
    return AXE.read_text(encoding="utf-8")


@pytest.fixture
async def page(browser):
    # French first, as the district's residents and staff see it; the browser's language picks it.
    context = await browser.new_context(viewport={"width": 1366, "height": 900}, locale="fr-FR",
                                        timezone_id="Europe/Paris",
                                        extra_http_headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
