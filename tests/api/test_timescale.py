"""The API on TimescaleDB: its tables come with the historian's migrations, and residents, consent, the write
audit and policies behave as on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gridctl.api import API_PREFIX, ApiSettings, create_app
from gridctl.api.context import ApiContext
from gridctl.api.store import AuditFilter, Role
from gridctl.clock import ManualClock
from gridctl.dispatch.audit import AuditEntry, Outcome
from gridctl.history import QuarantinePolicy, SiteReadings
from gridctl.history.timescale import TimescaleHistorian
from gridctl.policy import SitePolicy
from tests.api.support import NOW, history_readings

pytestmark = pytest.mark.timescale
SITE = "zac-saint-sauveur"


async def test_residents_consent_audit_and_policies_on_timescale(timescale_db: str, site) -> None:
    import httpx

    historian = TimescaleHistorian(timescale_db, quarantine=QuarantinePolicy(max_past=timedelta(days=4000)),
                                   clock=lambda: NOW)
    await historian.open()
    try:
        applied = await historian.upgrade()
        assert {100, 101, 102} <= set(applied)
        await historian.sync_site(site)
        # Three days of history are enough here.
        await historian.write([SiteReadings(site.id, history_readings(site, NOW - timedelta(days=3), NOW))],
                              received_at=NOW)
        await historian.refresh_rollups()
        clock = ManualClock(NOW)
        app = create_app(historian, {}, ApiSettings(rate_per_second=1000, rate_burst=1000), sites={SITE: site},
                         clock=clock.now)
        ctx: ApiContext = app.state.context
        await ctx.store.db.open()
        try:
            _user, token = await ctx.store.add_user("resident", Role.RESIDENT, [f"{SITE}/a-01"], NOW,
                                                    timedelta(days=1))
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                me = f"{API_PREFIX}/me/dwellings/{SITE}/a-01"
                daily = await client.get(f"{me}/consumption?start=2026-03-18&end=2026-03-20", headers=headers)
                assert daily.status_code == 200
                assert [b["energy_kwh"] is not None for b in daily.json()["buckets"]] == [True, True]
                refused = await client.get(f"{me}/consumption?resolution=hour", headers=headers)
                assert refused.status_code == 403
                await client.put(f"{me}/consents/load_curve", json={"granted": True}, headers=headers)
                hourly = await client.get(f"{me}/consumption?resolution=hour&start=2026-03-19&end=2026-03-20",
                                          headers=headers)
                assert hourly.status_code == 200 and len(hourly.json()["buckets"]) == 24
                # The same answers as the historian's own interface gives.
                frame = await historian.dwelling_energy(SITE, NOW.date() - timedelta(days=1), NOW.date(), "hour",
                                                        ["a-01"])
                assert [b["energy_kwh"] for b in hourly.json()["buckets"]] == pytest.approx(
                    frame["a-01"].tolist(), abs=1e-9)
                opened = await client.get(f"{API_PREFIX}/open/sites/{SITE}/daily?start=2026-03-18&end=2026-03-20")
                assert [d["dwellings_reporting"] for d in opened.json()["days"]] == [48, 48]

            entry = AuditEntry(NOW, SITE, "battery/power-setpoint", "optimizer", "schedule", "plan-1", 2, 0.0, 30.0,
                               30.0, None, NOW + timedelta(seconds=30), Outcome.WRITTEN, 30.0, None, False, True, "kW")
            await ctx.store.record_audit(entry)
            assert await ctx.store.audit_entries(AuditFilter(SITE, device_id="battery")) == [entry]
            assert await ctx.store.audit_entries(AuditFilter(SITE, outcome=Outcome.FAILED)) == []

            first = await ctx.store.add_policy(SITE, SitePolicy(import_limit_kw=150), "manager", "one", NOW)
            second = await ctx.store.add_policy(SITE, SitePolicy(import_limit_kw=120), "manager", "two", NOW)
            assert (first.version, second.version) == (1, 2)
            assert (await ctx.store.policy(SITE)).policy.import_limit_kw == 120
        finally:
            await ctx.store.db.close()
    finally:
        await historian.close()

