"""The endpoints the pages stand on: the operator's overview, the manager's what-if, the resident's advice."""

from __future__ import annotations

from tests.api.conftest import Api

SITE = "zac-saint-sauveur"


async def test_the_overview_sums_power_by_kind_and_counts_alarms_and_devices(api: Api) -> None:
    response = await api.client.get(f"/api/v1/sites/{SITE}/overview", headers=api.auth("operator"))
    assert response.status_code == 200, response.text
    body = response.json()
    flows = {f["kind"]: f for f in body["flows"]}
    latest = api.runtime.latest()
    assert flows["grid"]["power_kw"] == round(latest["grid-meter/power"].value, 3)
    assert flows["pv"]["power_kw"] == round(latest["rooftop-pv-inverter/power"].value, 3)
    # The stale battery reading's value is known, and lighting has no reading at all in this history.
    assert flows["lighting"]["power_kw"] is None and flows["lighting"]["missing"] == flows["lighting"]["points"]
    active = api.runtime.alarms.active()
    assert body["active_alarms"] == len(active) == body["unacknowledged_alarms"]
    assert sum(body["devices_by_state"].values()) == len(api.site.devices)
    assert body["devices_by_state"]["offline"] == 2


async def test_what_if_compares_the_policy_in_force_with_a_draft_on_one_horizon(api: Api) -> None:
    response = await api.client.post(f"/api/v1/sites/{SITE}/policy/what-if",
                                     json={"policy": {"horizon_hours": 6, "import_limit_kw": 20}},
                                     headers=api.auth("manager"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current_version"] is None and body["changed"] == ["horizon_hours", "import_limit_kw"]
    current, proposed = body["current"], body["proposed"]
    assert current["status"] == proposed["status"] == "optimal"
    # A tighter import limit cannot make the plan cheaper.
    assert proposed["objective_eur"] >= current["objective_eur"] - 1e-6
    for side in (current, proposed):
        assert {"cost_eur", "co2_kg", "peak_kw", "discomfort_k_h", "ev_unmet_kwh"} <= set(side)
        for violation in side["violations"]:
            assert violation["asset_id"] in violation["text"]
    # Nothing is written.
    assert await api.ctx.store.policies(SITE) == []


async def test_a_solve_that_finds_no_schedule_shows_no_cost_not_a_false_zero(api: Api, monkeypatch) -> None:
    import dataclasses

    real = api.runtime.preview

    async def out_of_time(policy):
        schedule = await real(policy)
        # What the solver returns when its time limit runs out before any schedule.
        return dataclasses.replace(schedule, status="not_solved", objective={}, violations=[])

    monkeypatch.setattr(api.runtime, "preview", out_of_time)
    response = await api.client.post(f"/api/v1/sites/{SITE}/policy/what-if", json={"policy": {"horizon_hours": 6}},
                                     headers=api.auth("manager"))
    assert response.status_code == 200, response.text
    proposed = response.json()["proposed"]
    assert proposed["status"] == "not_solved" and proposed["objective_eur"] is None and proposed["cost_eur"] is None
    response = await api.client.post(f"/api/v1/sites/{SITE}/policy/preview", json={"policy": {"horizon_hours": 6}},
                                     headers=api.auth("manager"))
    assert response.status_code == 200, response.text
    assert response.json()["objective_eur"] is None


async def test_what_if_words_each_violation(api: Api) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from gridctl.api.whatif import describe
    from optimizer.schedule import Violation

    v = Violation("offices-zone", "too_cold", datetime(2026, 3, 20, 6, tzinfo=UTC), datetime(2026, 3, 20, 8, tzinfo=UTC),
                  3.25, "K·h")
    assert describe(v, ZoneInfo("Europe/Paris")) == "offices-zone: colder than the comfort band, 3.2 K·h, 20/03 07:00–09:00"


async def test_advice_compares_in_plain_figures_and_prices_the_split(api: Api) -> None:
    response = await api.client.get(f"/api/v1/me/dwellings/{SITE}/a-01/advice", headers=api.auth("resident"))
    assert response.status_code == 200, response.text
    body = response.json()
    # The history ends on 2026-03-20: the default month is the one with the latest data.
    assert body["month"] == "2026-03" and body["data_end"] == "2026-03-21"
    assert body["data_start"] == "2026-03-06"
    assert body["dwellings_compared"] >= 10
    assert body["percent_vs_median"] == round((body["energy_kwh"] - body["median_kwh"]) / body["median_kwh"] * 100, 1)
    assert abs(body["peak_kwh"] + body["offpeak_kwh"] - body["energy_kwh"]) < 1e-6
    assert abs(body["peak_cost_eur"] + body["offpeak_cost_eur"] - body["cost_eur"]) <= 0.011
    assert body["tariff"]["kind"] == "hp_hc" and body["tariff"]["offpeak_windows"]
    for item in body["advice"]:
        assert item["kind"] in {"night_base_load", "peak_hours", "above_median"} and item["yearly_eur"] >= 0


async def test_advice_for_a_month_without_data_says_so(api: Api) -> None:
    response = await api.client.get(f"/api/v1/me/dwellings/{SITE}/a-01/advice?month=2025-01",
                                    headers=api.auth("resident"))
    assert response.status_code == 200
    body = response.json()
    assert body["energy_kwh"] is None and body["advice"] == []
    bad = await api.client.get(f"/api/v1/me/dwellings/{SITE}/a-01/advice?month=2025-13", headers=api.auth("resident"))
    assert bad.status_code == 422 and "month" in bad.json()["message"]


async def test_a_household_with_a_high_night_base_load_is_told_what_it_costs(api: Api) -> None:
    """a-01 goes on for three more days drawing an extra kilowatt every night: the advice names its night
    base load against the building's and what it costs a year."""
    from datetime import timedelta

    from drivers.base import Quality, Reading
    from gridctl.history import SiteReadings
    from tests.api.support import NOW, STEP, dwelling_kwh_per_quarter

    meter = next(d.meter for d in api.site.dwellings if d.id == "a-01")
    counter = float((await api.historian.latest(api.site.id, [meter]))[meter].value)
    readings, ts = [], NOW
    while ts < NOW + timedelta(days=3):
        ts += STEP
        night = 1 <= ts.astimezone(api.site.tz).hour < 5
        counter = round(counter + dwelling_kwh_per_quarter(0, ts) + (0.25 if night else 0.0), 2)
        readings.append(Reading(meter, ts, counter, Quality.GOOD))
    await api.historian.write([SiteReadings(api.site.id, readings)], received_at=ts)
    await api.historian.refresh_rollups()
    api.clock.advance(timedelta(days=3))
    response = await api.client.get(f"/api/v1/me/dwellings/{SITE}/a-01/advice", headers=api.auth("resident"))
    assert response.json()["data_end"] == "2026-03-24"
    night = next(a for a in response.json()["advice"] if a["kind"] == "night_base_load")
    assert night["own"] > night["building"] + 0.1
    # At least the extra 0.1 kW all year at the cheapest price.
    assert night["yearly_eur"] >= 0.1 * 8760 * 0.1635


async def test_site_values_give_the_policy_form_its_defaults(api: Api) -> None:
    response = await api.client.get(f"/api/v1/sites/{SITE}/policy/site-values", headers=api.auth("manager"))
    assert response.status_code == 200, response.text
    body = response.json()
    zones = [a for a in api.site.assets if a.type == "thermal_zone"]
    assert [z["id"] for z in body["zones"]] == [z.id for z in zones]
    zone = body["zones"][0]
    assert zone["occupied"] == [zones[0].comfort_occupied.min_temperature_c, zones[0].comfort_occupied.max_temperature_c]
    assert body["subscribed_power_kw"] == api.site.grid.subscribed_power_kw
    assert body["timezone"] == "Europe/Paris"
