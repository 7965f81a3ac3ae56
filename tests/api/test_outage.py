"""The API while its database is unreachable behind a TCP fault proxy: live values and alarms keep
answering from memory for tokens and sessions seen before, what needs the database answers 503 with
Retry-After (an unknown token too), nothing hangs or fails with a 500, and all answers again within
seconds of the database coming back."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from drivers.base import DeviceHealth, Quality, Reading
from gridctl.alarms import AlarmBook, AlarmKind
from gridctl.api import API_PREFIX, ApiSettings, create_app
from gridctl.api.auth import SESSION_COOKIE
from gridctl.api.context import ApiContext
from gridctl.api.store import Role
from gridctl.history.timescale import TimescaleHistorian
from sim.faults import FaultProxy
from tests.api.support import load

pytestmark = [pytest.mark.timescale, pytest.mark.slow]
# Longest any answer may take during the outage: the first request that meets the silent database waits
# for the connection's time bound (2 s here), every later one fails fast.
LONGEST_S = 4.0


class MemoryRuntime:
    """What the live endpoints read: the site, its alarms and latest values, all in memory."""

    def __init__(self, site, now: datetime) -> None:
        self.site = site
        self.alarms = AlarmBook()
        self.alarms.raise_alarm(AlarmKind.HISTORY_UNAVAILABLE, site.id, "the history database is away", now)
        address = site.all_points()[0][0]
        self._latest = {address: Reading(address, now, 1.5, Quality.GOOD)}

    def latest(self) -> Mapping[str, Reading]:
        return self._latest

    def device_health(self) -> Mapping[str, DeviceHealth]:
        return {}


def _proxied(dsn: str, port: int) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(port))
    return psycopg.conninfo.make_conninfo(**params)


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
async def test_api_through_a_database_outage(fault: str, timescale_db: str, timescale) -> None:
    site = load()
    now = datetime.now(UTC)
    proxy = FaultProxy("127.0.0.1", timescale.port).start()
    dsn = _proxied(timescale_db, proxy.port)
    historian = TimescaleHistorian(dsn, timeout_s=2, query_timeout_s=2)
    await historian.open()
    await historian.upgrade([site])
    await historian.sync_site(site)
    # Every request looks its token up: the outage path is taken at once.
    settings = ApiSettings(rate_per_second=1000, rate_burst=1000, token_cache=timedelta(0))
    app = create_app(historian, {site.id: MemoryRuntime(site, now)}, settings, database=dsn)
    ctx: ApiContext = app.state.context
    ctx.store.db.timeout_s = 2
    await ctx.store.db.open()
    try:
        operator, token = await ctx.store.add_user("ops", Role.OPERATOR, [site.id], now, timedelta(days=1))
        _stranger, unknown_token = await ctx.store.add_user("other", Role.OPERATOR, [site.id], now, timedelta(days=1))
        session_id, _csrf = await ctx.signin.open_session(operator, now)
        known = {"Authorization": f"Bearer {token}"}
        unknown = {"Authorization": f"Bearer {unknown_token}"}
        base = f"{API_PREFIX}/sites/{site.id}"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                     timeout=30) as client:
            # Bearer tokens are checked first: the cookie counts only where no token is sent.
            client.cookies.set(SESSION_COOKIE, session_id)

            async def get(path: str, **kwargs) -> httpx.Response:
                started = time.monotonic()
                answer = await client.get(path, **kwargs)
                took = time.monotonic() - started
                assert took < LONGEST_S, f"{path} took {took:.1f} s"
                return answer

            assert (await get(f"{base}/alarms", headers=known)).status_code == 200
            assert (await get(f"{base}/live")).status_code == 200
            assert (await get(f"{base}/audit", headers=known)).status_code == 200

            getattr(proxy, fault)()
            for _round in range(3):
                alarms = await get(f"{base}/alarms", headers=known)
                assert alarms.status_code == 200, alarms.text
                assert [a["kind"] for a in alarms.json()] == ["history_unavailable"]
                live = await get(f"{base}/live")
                assert live.status_code == 200 and live.json()[0]["value"] == 1.5
                for answer in (await get(f"{base}/audit", headers=known),
                               await get(f"{base}/alarms", headers=unknown),
                               await get(f"{API_PREFIX}/open/sites/{site.id}/daily")):
                    assert answer.status_code == 503, answer.text
                    assert int(answer.headers["Retry-After"]) >= 1
                    assert "database" in answer.json()["detail"]

            proxy.heal()
            healed = time.monotonic()
            while (await get(f"{base}/audit", headers=known)).status_code != 200:
                assert time.monotonic() - healed < 5, "the API did not answer within 5 s of the database"
                await _pause()
            assert (await get(f"{base}/alarms", headers=unknown)).status_code == 200

            schema = (await client.get(f"{API_PREFIX}/openapi.json")).json()
            documented = schema["paths"]["/api/v1/sites/{site_id}/audit"]["get"]["responses"]["503"]
            assert "Retry-After" in documented["headers"]
    finally:
        await ctx.store.db.close()
        await historian.close()
        proxy.stop()


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.2)
