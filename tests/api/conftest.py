"""An API over ZAC Saint-Sauveur's fortnight of history (a real SQLite historian), with one user per role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gridctl.api import ApiSettings, create_app
from gridctl.api.context import ApiContext
from gridctl.api.store import Role
from gridctl.clock import ManualClock
from gridctl.config.models import Site
from gridctl.history import QuarantinePolicy, SQLiteHistorian
from tests.api.support import NOW, HistoryRuntime, add_user, build_history, copy_history, load, small_site


@pytest.fixture(scope="session")
def site() -> Site:
    return load()


@pytest.fixture(scope="session")
def history_template(tmp_path_factory: pytest.TempPathFactory, site: Site) -> Path:
    path = tmp_path_factory.mktemp("history") / "template.sqlite"
    asyncio.run(build_history(path, site))
    return path


@dataclass
class Api:
    client: httpx.AsyncClient
    ctx: ApiContext
    runtime: HistoryRuntime
    historian: SQLiteHistorian
    clock: ManualClock
    site: Site
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str | None) -> dict[str, str]:
        return {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}

    async def user(self, name: str, role: Role, scope: list[str], valid_for: timedelta = timedelta(days=30)) -> str:
        token = await add_user(self.ctx.store, name, role, scope, valid_for)
        self.tokens[name] = token
        return token


async def make_api(db_path: Path, site: Site, settings: ApiSettings | None = None) -> tuple[Api, object]:
    clock = ManualClock(NOW)
    historian = SQLiteHistorian(db_path, quarantine=QuarantinePolicy(max_past=timedelta(days=4000)))
    await historian.open()
    unlimited = ApiSettings(rate_per_second=10_000, rate_burst=10_000, address_rate_per_second=10_000,
                            address_rate_burst=10_000)
    app = create_app(historian, {}, settings or unlimited,
                     sites={"small-site": small_site(site)}, clock=clock.now)
    ctx: ApiContext = app.state.context
    await ctx.store.db.open()
    runtime = HistoryRuntime(site, historian, ctx.store, clock)
    await runtime.refresh()
    ctx.runtimes = {site.id: runtime}
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridctl.test")
    api = Api(client, ctx, runtime, historian, clock, site)
    await api.user("resident", Role.RESIDENT, [f"{site.id}/a-01"])
    await api.user("operator", Role.OPERATOR, [site.id])
    await api.user("manager", Role.MANAGER, [site.id])
    await api.user("admin", Role.ADMIN, [site.id])
    return api, app


@pytest.fixture
async def api(tmp_path: Path, history_template: Path, site: Site) -> AsyncIterator[Api]:
    built, _app = await make_api(copy_history(history_template, tmp_path / "gridctl.sqlite"), site)
    try:
        yield built
    finally:
        await built.client.aclose()
        await built.ctx.store.db.close()
        await built.historian.close()
