"""The authorisation matrix: every endpoint × every role × in-scope / out-of-scope.

Expected: no token → 401; a role the endpoint is not for → 403; in scope → success; out of scope → 404,
with nothing of the other dwelling's or site's data in the answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gridctl.api import API_PREFIX
from gridctl.api.store import Role
from tests.api.conftest import Api

SITE = "zac-saint-sauveur"
OTHER_SITE = "small-site"  # exists, outside every staff token's scope
OWN = f"{SITE}/a-01"
OTHER_DWELLING = f"{SITE}/b-01"  # exists, belongs to someone else
ROLES = ["resident", "operator", "manager", "admin"]
RESIDENT = {"resident"}
STAFF = {"operator", "manager", "admin"}
OPERATORS = {"operator", "admin"}
MANAGERS = {"manager", "admin"}
_counter = itertools.count()


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # the route as declared, to check the matrix covers every one
    path: str  # with {target}: a dwelling "<site>/<id>" or a site id; None target when the path has no scope
    roles: set[str]
    scoped: bool = True
    body: Callable[[], Any] | None = None
    success: int = 200
    prepare: Callable[[Api], Any] | None = None
    public: bool = False


def _policy() -> dict:
    return {"policy": {"weights": {"cost_weight": 1.0}, "import_limit_kw": 200}, "comment": "matrix"}


def _event() -> dict:
    n = next(_counter)
    return {"id": f"dr-{n}", "start": "2026-03-21T17:00:00Z", "end": "2026-03-21T19:00:00Z",
            "max_import_kw": 120, "value_eur_per_kwh": 0.3}


async def _announced_event(api: Api) -> None:
    """An event to cancel, announced (again) before each call."""
    from gridctl.policy import DemandResponse

    event = DemandResponse.model_validate({**_event(), "id": "dr-cancel"})
    await api.ctx.store.add_demand_response(SITE, event, "seed", api.clock.now())
    await api.ctx.store.db.execute("UPDATE demand_response_events SET cancelled_at = NULL WHERE id = 'dr-cancel'")


async def _hands_off_battery(api: Api) -> None:
    await api.runtime.hands_off("device:battery", "test", "prepare hands on")


ENDPOINTS = [
    Endpoint("GET", "/me", "/me", set(ROLES), scoped=False),
    Endpoint("GET", "/auth/session", "/auth/session", set(ROLES), scoped=False),
    Endpoint("POST", "/auth/logout", "/auth/logout", set(ROLES), scoped=False, success=204),
    Endpoint("GET", "/me/dwellings/{site_id}/{dwelling_id}/consumption",
             "/me/dwellings/{target}/consumption", RESIDENT),
    Endpoint("GET", "/me/dwellings/{site_id}/{dwelling_id}/summary", "/me/dwellings/{target}/summary", RESIDENT),
    Endpoint("GET", "/me/dwellings/{site_id}/{dwelling_id}/comparison",
             "/me/dwellings/{target}/comparison?start=2026-03-07&end=2026-03-20", RESIDENT),
    Endpoint("GET", "/me/dwellings/{site_id}/{dwelling_id}/consents", "/me/dwellings/{target}/consents", RESIDENT),
    Endpoint("PUT", "/me/dwellings/{site_id}/{dwelling_id}/consents/{purpose}",
             "/me/dwellings/{target}/consents/load_curve", RESIDENT, body=lambda: {"granted": True}),
    Endpoint("GET", "/me/export", "/me/export", RESIDENT, scoped=False),
    Endpoint("POST", "/me/erasure", "/me/erasure", RESIDENT, scoped=False),
    Endpoint("GET", "/sites", "/sites", STAFF, scoped=False),
    Endpoint("GET", "/sites/{site_id}", "/sites/{target}", STAFF),
    Endpoint("GET", "/sites/{site_id}/live", "/sites/{target}/live", STAFF),
    Endpoint("GET", "/sites/{site_id}/devices", "/sites/{target}/devices", STAFF),
    Endpoint("GET", "/sites/{site_id}/alarms", "/sites/{target}/alarms", STAFF),
    Endpoint("POST", "/sites/{site_id}/alarms/acknowledge", "/sites/{target}/alarms/acknowledge", OPERATORS,
             body=lambda: {"kind": "device_offline", "subject": "street-lighting"}),
    Endpoint("GET", "/sites/{site_id}/audit", "/sites/{target}/audit", STAFF),
    Endpoint("GET", "/sites/{site_id}/schedule", "/sites/{target}/schedule", STAFF,
             prepare=lambda api: api.runtime.policy_changed(_version(api))),
    Endpoint("GET", "/sites/{site_id}/hands-off", "/sites/{target}/hands-off", STAFF),
    Endpoint("POST", "/sites/{site_id}/hands-off", "/sites/{target}/hands-off", OPERATORS,
             body=lambda: {"scope": "device:battery", "reason": "maintenance"}),
    Endpoint("DELETE", "/sites/{site_id}/hands-off", "/sites/{target}/hands-off?scope=device:battery", OPERATORS,
             prepare=_hands_off_battery),
    Endpoint("GET", "/sites/{site_id}/policy", "/sites/{target}/policy", MANAGERS),
    Endpoint("GET", "/sites/{site_id}/policy/versions", "/sites/{target}/policy/versions", MANAGERS),
    Endpoint("GET", "/sites/{site_id}/policy/versions/{version}", "/sites/{target}/policy/versions/1", MANAGERS,
             prepare=lambda api: api.ctx.store.add_policy(SITE, _version(api).policy, "seed", "", api.clock.now())),
    Endpoint("POST", "/sites/{site_id}/policy", "/sites/{target}/policy", MANAGERS, body=_policy, success=201),
    Endpoint("POST", "/sites/{site_id}/policy/preview", "/sites/{target}/policy/preview", MANAGERS,
             body=lambda: {"policy": {"horizon_hours": 4}}),
    Endpoint("POST", "/sites/{site_id}/policy/what-if", "/sites/{target}/policy/what-if", MANAGERS,
             body=lambda: {"policy": {"horizon_hours": 2}}),
    Endpoint("GET", "/sites/{site_id}/policy/site-values", "/sites/{target}/policy/site-values", MANAGERS),
    Endpoint("GET", "/sites/{site_id}/overview", "/sites/{target}/overview", STAFF),
    Endpoint("GET", "/me/dwellings/{site_id}/{dwelling_id}/advice", "/me/dwellings/{target}/advice", RESIDENT),
    Endpoint("GET", "/sites/{site_id}/kpis", "/sites/{target}/kpis", MANAGERS),
    Endpoint("GET", "/sites/{site_id}/thermal-models", "/sites/{target}/thermal-models", MANAGERS),
    Endpoint("GET", "/sites/{site_id}/demand-response", "/sites/{target}/demand-response", MANAGERS),
    Endpoint("POST", "/sites/{site_id}/demand-response", "/sites/{target}/demand-response", MANAGERS, body=_event,
             success=201),
    Endpoint("DELETE", "/sites/{site_id}/demand-response/{event_id}",
             "/sites/{target}/demand-response/dr-cancel?reason=matrix", MANAGERS, prepare=_announced_event),
    Endpoint("GET", "/open/sites", "/open/sites", set(ROLES), scoped=False, public=True),
    Endpoint("GET", "/open/sites/{site_id}/daily", f"/open/sites/{SITE}/daily", set(ROLES), scoped=False,
             public=True),
    Endpoint("GET", "/open/sites/{site_id}/buildings/{building_id}/daily",
             f"/open/sites/{SITE}/buildings/block-a/daily", set(ROLES), scoped=False, public=True),
]


def _version(api: Api):
    from gridctl.policy import PolicyVersion, SitePolicy

    return PolicyVersion(site_id=SITE, version=1, policy=SitePolicy(horizon_hours=4), author="seed",
                         created_at=api.clock.now())


def test_the_matrix_covers_every_endpoint(api: Api) -> None:
    schema = api.client._transport.app.openapi()  # type: ignore[attr-defined]
    declared = {
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, operations in schema["paths"].items()
        for method in operations
    }
    covered = {(e.method, e.route) for e in ENDPOINTS}
    # Signing in takes a password or an activation link, not a token: see test_signin.
    assert declared - {("POST", "/auth/login"), ("POST", "/auth/activate")} == covered


async def _call(api: Api, endpoint: Endpoint, who: str | None, target: str | None):
    if endpoint.prepare is not None:
        await endpoint.prepare(api)
    path = API_PREFIX + endpoint.path.format(target=target)
    body = endpoint.body() if endpoint.body else None
    return await api.client.request(endpoint.method, path, json=body, headers=api.auth(who))


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.route}")
async def test_every_role_in_and_out_of_scope(api: Api, endpoint: Endpoint) -> None:
    outcomes: list[tuple[str, str, int, int]] = []
    inside, outside = (OWN, OTHER_DWELLING) if endpoint.roles == RESIDENT else (SITE, OTHER_SITE)
    for role in ROLES:
        # Each case gets its own user: erasure ends a token, and the results must not depend on order.
        who = f"{role}-{next(_counter)}"
        await api.user(who, Role(role), [OWN] if role == "resident" else [SITE])
        allowed = role in endpoint.roles
        response = await _call(api, endpoint, who, inside)
        outcomes.append((role, "in scope", response.status_code, endpoint.success if allowed else 403))
        if endpoint.scoped:
            response = await _call(api, endpoint, who, outside)
            expected = 404 if allowed else 403
            outcomes.append((role, "out of scope", response.status_code, expected))
            if expected == 404 and response.status_code == 404:
                assert set(response.json()) == {"detail"} and response.json()["detail"].endswith("not found")
    anonymous = await _call(api, endpoint, None, inside)
    outcomes.append(("anonymous", "-", anonymous.status_code, endpoint.success if endpoint.public else 401))
    wrong = [o for o in outcomes if o[2] != o[3]]
    assert not wrong, "role, scope, got, expected: " + repr(wrong)


async def test_an_admin_with_every_site_sees_them_all(api: Api) -> None:
    await api.user("root", Role.ADMIN, ["*"])
    response = await api.client.get(f"{API_PREFIX}/sites", headers=api.auth("root"))
    assert sorted(s["id"] for s in response.json()) == [OTHER_SITE, SITE]
    response = await api.client.get(f"{API_PREFIX}/sites/{OTHER_SITE}", headers=api.auth("root"))
    assert response.status_code == 200


async def test_a_staff_token_lists_only_its_sites(api: Api) -> None:
    response = await api.client.get(f"{API_PREFIX}/sites", headers=api.auth("operator"))
    assert [s["id"] for s in response.json()] == [SITE]


async def test_expired_revoked_and_unknown_tokens_are_refused(api: Api) -> None:
    from datetime import timedelta

    await api.user("short", Role.RESIDENT, [OWN], valid_for=timedelta(minutes=5))
    assert (await api.client.get(f"{API_PREFIX}/me", headers=api.auth("short"))).status_code == 200
    api.clock.advance(timedelta(minutes=6))
    assert (await api.client.get(f"{API_PREFIX}/me", headers=api.auth("short"))).status_code == 401

    await api.user("leaver", Role.OPERATOR, [SITE])
    assert await api.ctx.store.revoke("leaver", api.clock.now())
    api.ctx.token_cache.forget((await api.ctx.store.user("leaver")).id)
    response = await api.client.get(f"{API_PREFIX}/sites", headers=api.auth("leaver"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"

    response = await api.client.get(f"{API_PREFIX}/sites", headers={"Authorization": "Bearer gct_nope"})
    assert response.status_code == 401


async def test_tokens_are_stored_only_as_digests(api: Api) -> None:
    rows = await api.ctx.store.db.fetch("SELECT token_hash FROM api_users")
    stored = {r[0] for r in rows}
    assert all(len(h) == 64 for h in stored)
    assert not set(api.tokens.values()) & stored
