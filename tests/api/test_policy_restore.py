"""A stored policy or event that no longer validates never bricks a site: the service starts on the last valid
version, an alarm names what was rejected and why, and a manager replaces it through the API. Managers cancel
events, audited, and the running service stops honouring them at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI

from gridctl.alarms import AlarmKind
from gridctl.api import API_PREFIX
from gridctl.api.store import ApiStore, Role
from gridctl.clock import ManualClock
from gridctl.policy import DemandResponse, SitePolicy
from gridctl.service.runner import ServiceHost, SiteOptions
from gridctl.service.web import attach_api
from tests.api.conftest import Api
from tests.api.support import NOW, SITE_DIR
from tests.service.test_controller import Rig

SITE = "zac-saint-sauveur"
SITES = f"{API_PREFIX}/sites/{SITE}"
EVENT = {"id": "ecowatt-1", "start": "2026-03-20T17:00:00Z", "end": "2026-03-20T20:00:00Z",
         "max_import_kw": 100, "value_eur_per_kwh": 0.35}


@asynccontextmanager
async def service(db: Path, spool: Path, clock: ManualClock) -> AsyncIterator[tuple[ServiceHost, FastAPI]]:
    """The service as `gridctl run` starts it, up to serving: history opened, the API attached, policies
    restored (polling is not started: no devices here)."""
    host = ServiceHost([SiteOptions(site=SITE_DIR)], str(db), spool, clock=clock)
    await host.open_history()
    try:
        app = await attach_api(host)
        try:
            yield host, app
        finally:
            await app.state.context.store.db.close()
    finally:
        await host.historian.close()
        host.spool.close()
        host.journal.close()


async def _insert_raw_policy(store: ApiStore, version: int, policy_json: str) -> None:
    await store.db.execute(
        "INSERT INTO policy_versions (site_id, version, policy, author, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [SITE, version, policy_json, "older gridctl", f"v{version}", store.db.ts(NOW)])


async def test_the_service_starts_on_the_last_valid_version_and_a_manager_replaces_the_rejected_one(
        tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    db, spool = tmp_path / "gridctl.sqlite", tmp_path / "spool"
    async with service(db, spool, clock) as (_host, app):
        store: ApiStore = app.state.context.store
        await store.add_policy(SITE, SitePolicy(import_limit_kw=180), "anna", "winter", NOW)
        await store.add_policy(SITE, SitePolicy(import_limit_kw=170), "anna", "tighter", NOW)
        # What an earlier gridctl stored for `"cost_weight": Infinity`: JSON has no infinity, so null.
        broken = json.loads(SitePolicy(import_limit_kw=160).model_dump_json())
        broken["weights"]["cost_weight"] = None
        await _insert_raw_policy(store, 3, json.dumps(broken))
        # An event stored with a duration the rules now refuse.
        await store.db.execute(
            "INSERT INTO demand_response_events (site_id, id, start_at, end_at, max_import_kw, value_eur_per_kwh, "
            "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [SITE, "week-long", store.db.ts(NOW), store.db.ts(NOW + timedelta(days=7)), 50.0, 0.3, "anna",
             store.db.ts(NOW)])
        _user, token = await store.add_user("anna", Role.MANAGER, [SITE], NOW, timedelta(days=1))

    # The restart: before, it failed on the stored version 3.
    async with service(db, spool, clock) as (host, app):
        controller = host.site(SITE).controller
        assert controller.policy is not None and controller.policy.version == 2
        assert controller.policy_in_force().import_limit_kw == 170
        alarms = {(a.kind, a.subject): a for a in controller.alarms.active()}
        policy_alarm = alarms[(AlarmKind.POLICY_INVALID, SITE)]
        assert "policy version 3" in policy_alarm.message and "weights.cost_weight" in policy_alarm.message
        assert "version 2 is in force" in policy_alarm.message
        assert "week-long" in alarms[(AlarmKind.POLICY_INVALID, "demand-response/week-long")].message
        assert controller.events == {}

        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            current = (await client.get(f"{SITES}/policy", headers=headers)).json()
            assert current["version"] == 2 and current["policy"]["import_limit_kw"] == 170
            assert [(r["version"], "weights.cost_weight" in r["problem"]) for r in current["rejected"]] == [(3, True)]
            versions = (await client.get(f"{SITES}/policy/versions", headers=headers)).json()
            assert [(v["version"], v["policy"] is None) for v in versions] == [(1, False), (2, False), (3, True)]
            assert (await client.get(f"{SITES}/policy/versions/3", headers=headers)).json()["problem"]
            operator_view = (await client.get(f"{SITES}/alarms", headers=headers)).json()
            assert "policy_invalid" in {a["kind"] for a in operator_view}

            replaced = await client.post(f"{SITES}/policy", headers=headers,
                                         json={"policy": {"import_limit_kw": 160}, "comment": "fixed",
                                               "base_version": 3})
            assert replaced.status_code == 201, replaced.text
            assert replaced.json()["version"] == 4 and replaced.json()["rejected"] == []
            assert controller.policy.version == 4
            assert not controller.alarms.is_active(AlarmKind.POLICY_INVALID, SITE)
            current = (await client.get(f"{SITES}/policy", headers=headers)).json()
            assert current["version"] == 4 and current["rejected"] == []

            # The broken event can be cancelled like any other, which clears its alarm.
            cancelled = await client.delete(f"{SITES}/demand-response/week-long?reason=stored+by+mistake",
                                            headers=headers)
            assert cancelled.status_code == 200 and cancelled.json()["event"] is None
            assert not controller.alarms.is_active(AlarmKind.POLICY_INVALID, "demand-response/week-long")

    # A version naming a zone the site no longer has is rejected the same way.
    async with service(db, spool, clock) as (host, app):
        await _insert_raw_policy(app.state.context.store, 5, SitePolicy.model_validate(
            {"comfort": {"old-wing": {}}}).model_dump_json())
    async with service(db, spool, clock) as (host, app):
        controller = host.site(SITE).controller
        assert controller.policy.version == 4
        message = next(a.message for a in controller.alarms.active() if a.kind == AlarmKind.POLICY_INVALID)
        assert "policy version 5" in message and "old-wing" in message


async def test_a_manager_cancels_an_event_with_a_reason_kept_with_it(api: Api) -> None:
    created = await api.client.post(f"{SITES}/demand-response", json=EVENT, headers=api.auth("manager"))
    assert created.status_code == 201
    missing_reason = await api.client.delete(f"{SITES}/demand-response/ecowatt-1", headers=api.auth("manager"))
    assert missing_reason.status_code == 422 and "query.reason" in missing_reason.json()["message"]
    api.clock.advance(timedelta(minutes=5))
    cancelled = await api.client.delete(f"{SITES}/demand-response/ecowatt-1?reason=grid+operator+withdrew+it",
                                        headers=api.auth("manager"))
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert (body["cancelled_by"], body["cancel_reason"]) == ("manager", "grid operator withdrew it")
    assert body["cancelled_at"] == "2026-03-20T11:05:00Z" and body["created_by"] == "manager"
    assert api.runtime.cancelled_events == ["ecowatt-1"]
    listed = (await api.client.get(f"{SITES}/demand-response", headers=api.auth("manager"))).json()
    assert [(e["event_id"], e["cancelled_by"]) for e in listed] == [("ecowatt-1", "manager")]
    again = await api.client.delete(f"{SITES}/demand-response/ecowatt-1?reason=twice", headers=api.auth("manager"))
    assert again.status_code == 409
    unknown = await api.client.delete(f"{SITES}/demand-response/nope?reason=x", headers=api.auth("manager"))
    assert unknown.status_code == 404
    # An event that is over is history: it cannot be cancelled.
    await api.client.post(f"{SITES}/demand-response", json={**EVENT, "id": "soon-over"}, headers=api.auth("manager"))
    api.clock.advance(timedelta(hours=9))
    over = await api.client.delete(f"{SITES}/demand-response/soon-over?reason=late", headers=api.auth("manager"))
    assert over.status_code == 409 and "over" in over.json()["detail"]


async def test_the_running_service_stops_honouring_a_cancelled_event_at_once(site) -> None:
    rig = Rig(site)
    await rig.poll()
    now = rig.clock.now()
    event = DemandResponse(id="ecowatt-2", start=now - timedelta(minutes=30), end=now + timedelta(hours=2),
                           max_import_kw=40.0, value_eur_per_kwh=0.5)
    controller = rig.controller
    await controller.demand_response(event)
    assert controller.replan_requested.is_set()
    planned = await controller.optimise()
    assert max(planned.schedule.setpoints["site.import_kw"].iloc[:4]) <= 40.0 + 1e-6
    assert controller._import_limit_kw(now) == 40.0
    assert not controller.replan_requested.is_set()

    await controller.demand_response_cancelled("ecowatt-2")
    # Dispatch limits import by the site's own limit from now on, and a re-plan is requested.
    assert controller._import_limit_kw(now) == site.grid.import_limit_kw
    assert controller.replan_requested.is_set()
    assert controller.policy_in_force().demand_response == []
    # A policy version stored meanwhile keeps announced events; a cancelled one does not come back.
    await controller.demand_response(event.model_copy(update={"id": "ecowatt-3"}))
    from gridctl.policy import PolicyVersion

    await controller.policy_changed(PolicyVersion(site_id=site.id, version=7, policy=SitePolicy(), author="m",
                                                  created_at=now))
    assert [e.id for e in controller.policy_in_force().demand_response] == ["ecowatt-3"]
