"""Every number a manager sends is finite and bounded, every time meaningful, every id the site's own: what
is refused is refused with the field named, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from gridctl.api import API_PREFIX
from gridctl.config.models import TimeWindow
from gridctl.policy import SitePolicy
from tests.api.conftest import Api
from tests.service.test_controller import Rig

SITE = "zac-saint-sauveur"
SITES = f"{API_PREFIX}/sites/{SITE}"
EVENT = {"id": "ecowatt-1", "start": "2026-03-21T17:00:00Z", "end": "2026-03-21T20:00:00Z",
         "max_import_kw": 100, "value_eur_per_kwh": 0.35}


async def _post(api: Api, path: str, raw: str):
    # Python's JSON reads Infinity, NaN and 1e999 (as infinity): so does the API's, which must refuse them.
    return await api.client.post(path, content=raw, headers={**api.auth("manager"),
                                                            "Content-Type": "application/json"})


@pytest.mark.parametrize(("raw", "field"), [
    ('{"policy": {"weights": {"cost_weight": Infinity}}}', "body.policy.weights.cost_weight"),
    ('{"policy": {"weights": {"carbon_eur_per_kg": NaN}}}', "body.policy.weights.carbon_eur_per_kg"),
    ('{"policy": {"weights": {"peak_eur_per_kw": 1e999}}}', "body.policy.weights.peak_eur_per_kw"),
    ('{"policy": {"weights": {"peak_eur_per_kw": 1e300}}}', "body.policy.weights.peak_eur_per_kw"),
    ('{"policy": {"import_limit_kw": -Infinity}}', "body.policy.import_limit_kw"),
    ('{"policy": {"ev_minimum_energy_kwh": 1e12}}', "body.policy.ev_minimum_energy_kwh"),
    ('{"policy": {"comfort": {"gym-hall": {"occupied": {"min_temperature_c": NaN, "max_temperature_c": 22}}}}}',
     "body.policy.comfort.gym-hall.occupied.min_temperature_c"),
    ('{"policy": {"lighting_required_lx": {"gym-hall-lighting": Infinity}}}',
     "body.policy.lighting_required_lx.gym-hall-lighting"),
    ('{"policy": {"public_lighting_curfew": {"start": "22:00:00Z", "end": "06:00"}}}',
     "body.policy.public_lighting_curfew.start"),
    ('{"policy": {"public_lighting_curfew": {"start": "23:00", "end": "05:30+02:00"}}}',
     "body.policy.public_lighting_curfew.end"),
    ('{"policy": {"comfort": {"no-such-zone": {}}}}', "body.policy.comfort.no-such-zone"),
    ('{"policy": {"comfort": {"street-circuit-1": {}}}}', "body.policy.comfort.street-circuit-1"),
    ('{"policy": {"lighting_required_lx": {"gym-hall": 500}}}', "body.policy.lighting_required_lx.gym-hall"),
    ('{"policy": {"demand_response": [' + json.dumps({**EVENT, "max_import_kw": 1e999}).replace("inf", "1e999")
     + ']}}', "body.policy.demand_response.0.max_import_kw"),
    ('{"policy": {"demand_response": [' + json.dumps({**EVENT, "end": "2026-03-18T20:00:00Z",
                                                      "start": "2026-03-18T17:00:00Z"}) + ']}}',
     "body.policy.demand_response.0.end"),
    ('{"policy": {"demand_response": [' + json.dumps(EVENT) + "," + json.dumps(EVENT) + ']}}',
     "body.policy.demand_response.1.id"),
], ids=lambda v: v if v.startswith("body") else None)
async def test_a_policy_refused_names_its_field_and_stores_nothing(api: Api, raw: str, field: str) -> None:
    response = await _post(api, f"{SITES}/policy", raw)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"], response.json()["message"]
    assert await api.ctx.store.policies(SITE) == []
    assert api.runtime.policy_versions == []
    # The site still answers: nothing half-stored breaks the next call.
    current = await api.client.get(f"{SITES}/policy", headers=api.auth("manager"))
    assert current.status_code == 200 and current.json()["version"] is None
    # A preview refuses the same draft for the same reason, before any solve.
    preview = await _post(api, f"{SITES}/policy/preview", raw)
    assert preview.status_code == 422 and field in preview.json()["message"]


async def test_the_same_policy_with_sane_values_is_stored_and_planned(api: Api) -> None:
    policy = {"weights": {"cost_weight": 2.0, "peak_eur_per_kw": 5.0}, "import_limit_kw": 180,
              "comfort": {"gym-hall": {"occupied": {"min_temperature_c": 18, "max_temperature_c": 21}}},
              "lighting_required_lx": {"gym-hall-lighting": 300},
              "public_lighting_curfew": {"start": "23:00", "end": "05:30"},
              "demand_response": [EVENT]}
    response = await api.client.post(f"{SITES}/policy", json={"policy": policy}, headers=api.auth("manager"))
    assert response.status_code == 201, response.text
    stored = (await api.ctx.store.policies(SITE))[0]
    assert stored.policy.public_lighting_curfew.start.isoformat() == "23:00:00"
    assert api.runtime.current_schedule().schedule.has_solution
    again = (await api.client.get(f"{SITES}/policy", headers=api.auth("manager"))).json()
    assert again["policy"]["public_lighting_curfew"]["start"] == "23:00:00"


@pytest.mark.parametrize(("change", "message"), [
    ({"end": "2026-03-21T16:00:00Z"}, "end must be after start"),
    ({"end": "2026-03-25T17:00:01Z"}, "at most 3 days"),
    ({"start": "2026-03-19T08:00:00Z", "end": "2026-03-19T10:00:00Z"}, "already over"),
    ({"start": "2027-06-01T17:00:00Z", "end": "2027-06-01T19:00:00Z"}, "within 366 days"),
    ({"start": "9999-12-31T23:00:00-23:00", "end": "9999-12-31T23:30:00-23:00"}, "between 2000-01-01"),
    ({"max_import_kw": -1}, "body.max_import_kw"),
    ({"value_eur_per_kwh": 1e9}, "body.value_eur_per_kwh"),
])
async def test_a_demand_response_event_is_bounded_in_time_and_value(api: Api, change: dict, message: str) -> None:
    response = await api.client.post(f"{SITES}/demand-response", json={**EVENT, **change},
                                     headers=api.auth("manager"))
    assert response.status_code == 422, response.text
    assert message in response.json()["message"], response.json()["message"]
    assert await api.ctx.store.demand_responses(SITE) == [] and api.runtime.demand_responses == []


async def test_an_infinite_import_limit_in_an_event_is_refused(api: Api) -> None:
    raw = json.dumps({**EVENT, "max_import_kw": float("inf")})
    assert "Infinity" in raw
    response = await _post(api, f"{SITES}/demand-response", raw)
    assert response.status_code == 422 and "body.max_import_kw" in response.json()["message"]


def test_wall_clock_times_never_carry_an_offset() -> None:
    with pytest.raises(ValueError, match="without an offset"):
        TimeWindow.model_validate({"start": "22:00:00Z", "end": "06:00"})
    with pytest.raises(ValueError, match="without an offset"):
        SitePolicy.model_validate({"public_lighting_curfew": {"start": "22:00:00+01:00", "end": "06:00"}})
    assert TimeWindow.model_validate({"start": "22:00", "end": "06:00"}).start.tzinfo is None


async def test_a_curfew_policy_optimises(site) -> None:
    """The curfew that used to make every optimisation fail, given as the API now takes it."""
    rig = Rig(site)
    await rig.poll()
    policy = SitePolicy.model_validate({"public_lighting_curfew": {"start": "22:00", "end": "06:00"},
                                        "public_lighting_curfew_level_pct": 30})
    from gridctl.policy import PolicyVersion

    await rig.controller.policy_changed(PolicyVersion(site_id=site.id, version=1, policy=policy, author="m",
                                                      created_at=rig.clock.now()))
    planned = await rig.controller.optimise()
    assert planned is not None and planned.policy_version == 1
    assert rig.controller.stats.optimiser_failures == 0
