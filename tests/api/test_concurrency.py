"""Concurrent inserts answer 409, never 500, on both back ends: requests sent together to two API processes'
worth of connections on one SQLite file, and to one API over TimescaleDB with its pool of connections.
Previews run one solve per site at a time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gridctl.api import API_PREFIX, ApiSettings, create_app
from gridctl.api.store import ApiStore, Role
from gridctl.clock import ManualClock
from gridctl.history import QuarantinePolicy, SiteReadings
from gridctl.history.timescale import TimescaleHistorian
from gridctl.policy import PolicyVersion
from tests.api.conftest import Api
from tests.api.support import NOW, HistoryRuntime, history_readings

SITE = "zac-saint-sauveur"
SITES = f"{API_PREFIX}/sites/{SITE}"
UNLIMITED = ApiSettings(rate_per_second=10_000, rate_burst=10_000, address_rate_per_second=10_000,
                        address_rate_burst=10_000)
EVENT = {"id": "ecowatt-7", "start": "2026-03-21T17:00:00Z", "end": "2026-03-21T19:00:00Z",
         "max_import_kw": 120, "value_eur_per_kwh": 0.3}
TOGETHER = 8


async def _race(clients: list[httpx.AsyncClient], token: str, path: str, bodies: list[dict]) -> Counter[int]:
    headers = {"Authorization": f"Bearer {token}"}
    responses = await asyncio.gather(*(clients[i % len(clients)].post(path, json=body, headers=headers)
                                       for i, body in enumerate(bodies)))
    failures = [r.text for r in responses if r.status_code >= 500]
    assert not failures, failures
    return Counter(r.status_code for r in responses)


async def _check_inserts(clients: list[httpx.AsyncClient], store: ApiStore, token: str) -> None:
    # The same event announced by several managers at once: one is stored, the others are told it exists.
    statuses = await _race(clients, token, f"{SITES}/demand-response", [EVENT] * TOGETHER)
    assert statuses == Counter({201: 1, 409: TOGETHER - 1})
    assert [r.event_id for r in await store.demand_responses(SITE)] == ["ecowatt-7"]

    # Several managers change the policy they all read as version 0: one wins, the others must reload.
    bodies = [{"policy": {"import_limit_kw": 150 + i, "horizon_hours": 1}, "base_version": 0}
              for i in range(TOGETHER)]
    statuses = await _race(clients, token, f"{SITES}/policy", bodies)
    assert statuses == Counter({201: 1, 409: TOGETHER - 1})
    assert [v.version for v in await store.policies(SITE)] == [1]

    # Without a base version each insert takes the next number, or is told to retry: never a 500.
    bodies = [{"policy": {"import_limit_kw": 100 + i, "horizon_hours": 1}} for i in range(TOGETHER)]
    statuses = await _race(clients, token, f"{SITES}/policy", bodies)
    assert set(statuses) <= {201, 409} and statuses[201] >= 1
    versions = [v.version for v in await store.policies(SITE)]
    assert versions == list(range(1, 2 + statuses[201]))


async def test_concurrent_inserts_on_sqlite(api: Api, tmp_path: Path) -> None:
    # A second API on the same database file, with its own connection: as a second worker process would be.
    database = api.historian.path  # type: ignore[attr-defined]
    second = create_app(api.historian, {SITE: api.runtime}, UNLIMITED, database=str(database), clock=api.clock.now)
    await second.state.context.store.db.open()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://t") as client:
            await _check_inserts([api.client, client], api.ctx.store, api.tokens["manager"])
    finally:
        await second.state.context.store.db.close()


@asynccontextmanager
async def _timescale_api(dsn: str, site) -> AsyncIterator[tuple[httpx.AsyncClient, ApiStore, str]]:
    historian = TimescaleHistorian(dsn, quarantine=QuarantinePolicy(max_past=timedelta(days=4000)),
                                   clock=lambda: NOW)
    await historian.open()
    try:
        await historian.upgrade()
        await historian.sync_site(site)
        await historian.write([SiteReadings(site.id, history_readings(site, NOW - timedelta(hours=2), NOW))],
                              received_at=NOW)
        clock = ManualClock(NOW)
        app = create_app(historian, {}, UNLIMITED, clock=clock.now)
        store: ApiStore = app.state.context.store
        await store.db.open()
        runtime = HistoryRuntime(site, historian, store, clock)  # type: ignore[arg-type]
        await runtime.refresh()
        app.state.context.runtimes = {SITE: runtime}
        _user, token = await store.add_user("manager", Role.MANAGER, [SITE], NOW, timedelta(days=1))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                yield client, store, token
        finally:
            await store.db.close()
    finally:
        await historian.close()


@pytest.mark.timescale
async def test_concurrent_inserts_on_timescale(timescale_db: str, site) -> None:
    async with _timescale_api(timescale_db, site) as (client, store, token):
        await _check_inserts([client], store, token)


async def test_one_preview_per_site_at_a_time(api: Api) -> None:
    # The schedule in force makes the site's previous solve time known: it is the wait a busy answer gives.
    await api.runtime.policy_changed(PolicyVersion(site_id=SITE, version=1, policy={"horizon_hours": 4},
                                                   author="m", created_at=NOW))
    draft = {"policy": {"horizon_hours": 48, "step_minutes": 5}}
    responses = await asyncio.gather(*(api.client.post(f"{SITES}/policy/preview", json=draft,
                                                       headers=api.auth("manager")) for _ in range(3)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({200: 1, 429: 2}), [r.text for r in responses]
    busy = next(r for r in responses if r.status_code == 429)
    assert int(busy.headers["retry-after"]) >= 1 and "one runs at a time" in busy.json()["detail"]
    # Once it is done, the next preview runs.
    after = await api.client.post(f"{SITES}/policy/preview", json={"policy": {"horizon_hours": 2}},
                                  headers=api.auth("manager"))
    assert after.status_code == 200
