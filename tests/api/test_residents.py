"""Residents' data and rights: daily by default, the load curve only with consent, comparison and open data
never over fewer than ten dwellings, export, erasure, CSV and bad input."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from drivers.base import Quality, Reading
from gridctl.api import API_PREFIX, ApiSettings
from gridctl.api.csvout import escape_cell, to_csv
from gridctl.api.models import Consumption
from gridctl.api.store import Role
from gridctl.history import SiteReadings
from tests.api.conftest import Api, make_api
from tests.api.support import dwelling_kwh_per_quarter, small_site

SITE = "zac-saint-sauveur"
ME = f"{API_PREFIX}/me/dwellings/{SITE}/a-01"
A01 = 0  # a-01's index in the site file: its consumption profile


def expected_kwh(start: datetime, end: datetime) -> float:
    """What a-01 used in (start, end], from the generator of the stored history."""
    total, ts = 0.0, start + timedelta(minutes=15)
    while ts <= end:
        total += dwelling_kwh_per_quarter(A01, ts)
        ts += timedelta(minutes=15)
    return total


async def test_daily_is_the_default_and_matches_the_meter(api: Api) -> None:
    response = await api.client.get(f"{ME}/consumption?start=2026-03-10&end=2026-03-12", headers=api.auth("resident"))
    assert response.status_code == 200
    body = response.json()
    assert body["resolution"] == "day"
    # Built without pydantic for speed, the body still has the documented shape.
    assert Consumption.model_validate(body).total_kwh == body["total_kwh"]
    assert [b["start"] for b in body["buckets"]] == ["2026-03-10T00:00:00+01:00", "2026-03-11T00:00:00+01:00"]
    # Local midnight in Paris is 23:00 UTC the day before.
    day = datetime(2026, 3, 9, 23, tzinfo=UTC)
    assert abs(body["buckets"][0]["energy_kwh"] - expected_kwh(day, day + timedelta(days=1))) < 0.02


async def test_load_curve_is_refused_without_consent_and_served_after(api: Api) -> None:
    for resolution in ("hour", "15min"):
        response = await api.client.get(f"{ME}/consumption?resolution={resolution}&start=2026-03-10&end=2026-03-11",
                                        headers=api.auth("resident"))
        assert response.status_code == 403
        assert "consent" in response.json()["detail"]

    consents = (await api.client.get(f"{ME}/consents", headers=api.auth("resident"))).json()
    assert {c["purpose"]: c["granted"] for c in consents} == {"load_curve": False, "research": False}
    granted = await api.client.put(f"{ME}/consents/load_curve", json={"granted": True}, headers=api.auth("resident"))
    assert granted.status_code == 200 and granted.json()["granted"] is True

    hourly = await api.client.get(f"{ME}/consumption?resolution=hour&start=2026-03-10&end=2026-03-11",
                                  headers=api.auth("resident"))
    assert hourly.status_code == 200
    buckets = hourly.json()["buckets"]
    assert len(buckets) == 24
    hour = datetime(2026, 3, 10, 6, tzinfo=UTC)  # 07:00 in Paris
    assert buckets[7]["start"] == "2026-03-10T07:00:00+01:00"
    assert abs(buckets[7]["energy_kwh"] - expected_kwh(hour, hour + timedelta(hours=1))) < 0.02

    quarter = await api.client.get(f"{ME}/consumption?resolution=15min&start=2026-03-10&end=2026-03-11",
                                   headers=api.auth("resident"))
    assert quarter.status_code == 200
    quarters = quarter.json()["buckets"]
    assert len(quarters) == 96
    first = datetime(2026, 3, 9, 23, tzinfo=UTC)
    for i in (0, 30, 95):
        assert abs(quarters[i]["energy_kwh"] - dwelling_kwh_per_quarter(A01, first + timedelta(minutes=15 * (i + 1)))) < 0.011

    # Revoking ends access at once, and both decisions stay on record.
    await api.client.put(f"{ME}/consents/load_curve", json={"granted": False}, headers=api.auth("resident"))
    refused = await api.client.get(f"{ME}/consumption?resolution=hour", headers=api.auth("resident"))
    assert refused.status_code == 403
    history = await api.ctx.store.consent_history(await api.ctx.store.user("resident"))
    assert [(e.purpose, e.granted) for e in history] == [("load_curve", True), ("load_curve", False)]


async def test_consent_for_another_purpose_does_not_open_the_load_curve(api: Api) -> None:
    await api.client.put(f"{ME}/consents/research", json={"granted": True}, headers=api.auth("resident"))
    response = await api.client.get(f"{ME}/consumption?resolution=hour", headers=api.auth("resident"))
    assert response.status_code == 403


async def test_consent_is_the_residents_not_the_dwellings(api: Api) -> None:
    await api.client.put(f"{ME}/consents/load_curve", json={"granted": True}, headers=api.auth("resident"))
    await api.user("flatmate", Role.RESIDENT, [f"{SITE}/a-01"])
    response = await api.client.get(f"{ME}/consumption?resolution=hour", headers=api.auth("flatmate"))
    assert response.status_code == 403


async def test_csv_export_of_any_period(api: Api) -> None:
    response = await api.client.get(f"{ME}/consumption?start=2026-03-07&end=2026-03-20&format=csv",
                                    headers=api.auth("resident"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["start", "energy_kwh"]
    assert len(rows) == 1 + 13
    assert all(float(r[1]) > 0 for r in rows[1:])


async def test_monthly_summary_prices_peak_and_offpeak_hours(api: Api) -> None:
    response = await api.client.get(f"{ME}/summary?month=2026-03", headers=api.auth("resident"))
    body = response.json()
    assert response.status_code == 200
    assert body["tariff"] == "hp_hc" and body["days_in_month"] == 31
    assert abs(body["peak_energy_kwh"] + body["offpeak_energy_kwh"] - body["energy_kwh"]) < 1e-6
    expected = body["peak_energy_kwh"] * 0.2081 + body["offpeak_energy_kwh"] * 0.1635
    assert abs(body["cost_eur"] - expected) < 0.01
    # The history covers 6 to 20 March (local): the whole of it falls in the month.
    start = datetime(2026, 3, 6, 11, tzinfo=UTC)
    assert abs(body["energy_kwh"] - expected_kwh(start, start + timedelta(days=14))) < 0.05


async def test_comparison_with_the_building_median(api: Api) -> None:
    response = await api.client.get(f"{ME}/comparison?start=2026-03-07&end=2026-03-20", headers=api.auth("resident"))
    body = response.json()
    assert response.status_code == 200
    assert body["building"] == "block-a" and body["dwellings_compared"] == 24
    own = body["energy_kwh"]
    assert own is not None and own < body["median_kwh"]  # a-01 has the smallest profile of its building


async def test_aggregates_under_ten_dwellings_are_refused(api: Api) -> None:
    await api.user("small-resident", Role.RESIDENT, ["small-site/a-02"])
    compare = await api.client.get(f"{API_PREFIX}/me/dwellings/small-site/a-02/comparison",
                                   headers=api.auth("small-resident"))
    assert compare.status_code == 409
    assert "at least 10 dwellings" in compare.json()["detail"]
    site_daily = await api.client.get(f"{API_PREFIX}/open/sites/small-site/daily")
    assert site_daily.status_code == 409
    building = await api.client.get(f"{API_PREFIX}/open/sites/small-site/buildings/block-a/daily")
    assert building.status_code == 409
    listed = (await api.client.get(f"{API_PREFIX}/open/sites")).json()
    assert [s["site_id"] for s in listed] == [SITE]


async def test_a_building_aggregate_is_refused_when_the_rest_of_the_site_is_under_ten(api: Api) -> None:
    site = api.site
    lopsided = site.model_copy(update={"id": "lopsided", "dwellings": site.dwellings[:24] + site.dwellings[24:29]})
    api.ctx.extra_sites = {**api.ctx.extra_sites, "lopsided": lopsided}
    response = await api.client.get(f"{API_PREFIX}/open/sites/lopsided/buildings/block-a/daily")
    assert response.status_code == 409
    assert "rest of the site (5)" in response.json()["detail"]


async def test_open_data_withholds_days_with_fewer_than_ten_reporting(api: Api) -> None:
    # On 22 March only five meters report.
    ts = [datetime(2026, 3, 21, 23, tzinfo=UTC) + timedelta(hours=h) for h in range(25)]
    readings = [Reading(d.meter, t, 5000.0 + i, Quality.GOOD) for d in api.site.dwellings[:5] for i, t in enumerate(ts)]
    await api.historian.write([SiteReadings(SITE, readings)], received_at=ts[-1])
    await api.historian.refresh_rollups()
    response = await api.client.get(f"{API_PREFIX}/open/sites/{SITE}/daily?start=2026-03-18&end=2026-03-23")
    days = {d["day"]: d for d in response.json()["days"]}
    assert days["2026-03-22"] == {"day": "2026-03-22", "energy_kwh": None, "dwellings_reporting": 5,
                                  "note": "fewer than 10 dwellings reported"}
    assert days["2026-03-19"]["dwellings_reporting"] == 48 and days["2026-03-19"]["energy_kwh"] > 0

    building = await api.client.get(f"{API_PREFIX}/open/sites/{SITE}/buildings/block-b/daily?start=2026-03-18&end=2026-03-20&format=csv")
    rows = list(csv.reader(io.StringIO(building.text)))
    assert rows[0] == ["day", "energy_kwh", "dwellings_reporting"] and rows[1][2] == "24"


async def test_export_all_my_data_in_one_file(api: Api) -> None:
    await api.client.put(f"{ME}/consents/load_curve", json={"granted": True}, headers=api.auth("resident"))
    response = await api.client.get(f"{API_PREFIX}/me/export", headers=api.auth("resident"))
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    document = json.loads(response.content)
    assert document["account"]["name"] == "resident"
    assert [c["purpose"] for c in document["consents"]] == ["load_curve"]
    (dwelling,) = document["dwellings"]
    assert dwelling["dwelling_id"] == "a-01"
    assert len(dwelling["daily_kwh"]) == 15
    assert len(dwelling["hourly_kwh"]) == 14 * 24


async def test_erasure_removes_personal_links_and_keeps_anonymous_aggregates(api: Api) -> None:
    open_before = (await api.client.get(f"{API_PREFIX}/open/sites/{SITE}/daily")).json()
    await api.client.put(f"{ME}/consents/load_curve", json={"granted": True}, headers=api.auth("resident"))
    user = await api.ctx.store.user("resident")
    response = await api.client.post(f"{API_PREFIX}/me/erasure", headers=api.auth("resident"))
    assert response.status_code == 200
    assert response.json()["dwellings_unlinked"] == 1 and response.json()["consents_removed"] == 1
    assert (await api.client.get(f"{API_PREFIX}/me", headers=api.auth("resident"))).status_code == 401
    assert await api.ctx.store.user("resident") is None
    assert await api.ctx.store.consent_history(user) == []
    rows = await api.ctx.store.db.fetch("SELECT name, scope, revoked_at FROM api_users WHERE id = ?", [user.id])
    assert rows[0][0].startswith("erased-") and rows[0][1] == "[]" and rows[0][2] is not None
    assert (await api.ctx.store.db.fetch("SELECT dwellings FROM erasures"))[0][0] == 1
    assert (await api.client.get(f"{API_PREFIX}/open/sites/{SITE}/daily")).json() == open_before


async def test_bad_input_names_the_field(api: Api) -> None:
    response = await api.client.get(f"{ME}/consumption?resolution=weekly", headers=api.auth("resident"))
    assert response.status_code == 422 and "query.resolution" in response.json()["message"]
    response = await api.client.get(f"{ME}/consumption?start=2026-03-10&end=2026-03-01", headers=api.auth("resident"))
    assert response.status_code == 422 and response.json()["message"].startswith("query.end")
    response = await api.client.get(f"{ME}/consumption?start=yesterday", headers=api.auth("resident"))
    assert response.status_code == 422 and "query.start" in response.json()["message"]
    response = await api.client.get(f"{ME}/summary?month=2026-13", headers=api.auth("resident"))
    assert response.status_code == 422 and "query.month" in response.json()["message"]
    response = await api.client.put(f"{ME}/consents/load_curve", json={"granted": "maybe"}, headers=api.auth("resident"))
    assert response.status_code == 422 and "body.granted" in response.json()["message"]


async def test_an_unknown_dwelling_is_404(api: Api) -> None:
    response = await api.client.get(f"{API_PREFIX}/me/dwellings/{SITE}/z-99/consumption", headers=api.auth("resident"))
    assert response.status_code == 404


async def test_a_range_too_long_for_the_resolution_is_422_with_the_limit(api: Api) -> None:
    await api.client.put(f"{ME}/consents/load_curve", json={"granted": True}, headers=api.auth("resident"))
    response = await api.client.get(f"{ME}/consumption?resolution=15min&start=2026-01-01&end=2026-03-01",
                                    headers=api.auth("resident"))
    assert response.status_code == 422
    assert response.json()["message"].startswith("query.end") and "at most 31 days" in response.json()["message"]
    response = await api.client.get(f"{ME}/consumption?resolution=hour&start=2024-01-01&end=2026-03-01",
                                    headers=api.auth("resident"))
    assert response.status_code == 422 and "at most 366 days" in response.json()["message"]


def test_csv_cells_that_could_run_as_formulas_are_escaped() -> None:
    assert [escape_cell(v) for v in ("=1+1", "+33", "-2", "@SUM(A1)", "plain", 1.5, -2.0, None)] == [
        "'=1+1", "'+33", "'-2", "'@SUM(A1)", "plain", 1.5, -2.0, ""]
    text = to_csv(["actor"], [["=HYPERLINK(\"http://x\")"]])
    assert text.splitlines()[1] == "\"'=HYPERLINK(\"\"http://x\"\")\""


async def test_rate_limit_answers_429(tmp_path, history_template, site) -> None:
    from tests.api.support import copy_history

    api, _app = await make_api(copy_history(history_template, tmp_path / "db.sqlite"), site,
                               ApiSettings(rate_per_second=0.01, rate_burst=3))
    try:
        codes = [(await api.client.get(f"{API_PREFIX}/me", headers=api.auth("resident"))).status_code
                 for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = await api.client.get(f"{API_PREFIX}/me", headers=api.auth("resident"))
        assert int(limited.headers["retry-after"]) >= 1
        # Another token has its own bucket.
        assert (await api.client.get(f"{API_PREFIX}/sites", headers=api.auth("operator"))).status_code == 200
    finally:
        await api.client.aclose()
        await api.ctx.store.db.close()
        await api.historian.close()


def test_small_site_helper_keeps_nine_dwellings(site) -> None:
    assert len(small_site(site).dwellings) == 9


async def test_made_up_tokens_share_their_address_bucket(tmp_path, history_template, site) -> None:
    from tests.api.support import copy_history

    settings = ApiSettings(rate_per_second=1000, rate_burst=1000, address_rate_per_second=0.01, address_rate_burst=4)
    api, _app = await make_api(copy_history(history_template, tmp_path / "db.sqlite"), site, settings)
    try:
        codes = [(await api.client.get(f"{API_PREFIX}/me", headers={"Authorization": f"Bearer gct_guess{n}"})).status_code
                 for n in range(6)]
        assert codes == [401, 401, 401, 401, 429, 429]
    finally:
        await api.client.aclose()
        await api.ctx.store.db.close()
        await api.historian.close()
