"""Energy managers: policy versions, previews that write nothing, KPIs, demand-response events."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from drivers.base import Quality, Reading
from gridctl.api import API_PREFIX
from gridctl.config.models import ThermalModel
from gridctl.history import SiteReadings
from gridctl.service.snapshot import Snapshot
from tests.api.conftest import Api
from tests.api.support import HISTORY_DAYS, NOW, STEP, history_readings
from tests.forecast.zones import measure_zone

SITE = "zac-saint-sauveur"
SITES = f"{API_PREFIX}/sites/{SITE}"


async def test_policy_versions_say_who_changed_what_and_when(api: Api) -> None:
    first = await api.client.post(f"{SITES}/policy", headers=api.auth("manager"),
                                  json={"policy": {"import_limit_kw": 180}, "comment": "winter limit"})
    assert first.status_code == 201
    assert first.json()["version"] == 1 and first.json()["changed"] == ["import_limit_kw"]
    api.clock.advance(timedelta(hours=2))
    second = await api.client.post(
        f"{SITES}/policy", headers=api.auth("admin"),
        json={"policy": {"import_limit_kw": 180, "weights": {"carbon_eur_per_kg": 0.1}}, "comment": "CO2 price"},
    )
    assert second.json()["version"] == 2 and second.json()["changed"] == ["weights.carbon_eur_per_kg"]

    versions = (await api.client.get(f"{SITES}/policy/versions", headers=api.auth("manager"))).json()
    assert [(v["version"], v["author"], v["comment"]) for v in versions] == [
        (1, "manager", "winter limit"), (2, "admin", "CO2 price")]
    assert versions[1]["created_at"] == "2026-03-20T13:00:00Z"
    current = (await api.client.get(f"{SITES}/policy", headers=api.auth("manager"))).json()
    assert current["version"] == 2 and current["policy"]["weights"]["carbon_eur_per_kg"] == 0.1
    old = (await api.client.get(f"{SITES}/policy/versions/1", headers=api.auth("manager"))).json()
    assert old["policy"]["weights"]["carbon_eur_per_kg"] == 0.0
    assert (await api.client.get(f"{SITES}/policy/versions/9", headers=api.auth("manager"))).status_code == 404

    # The service was told each time, and its schedule follows the version in force.
    assert [v.version for v in api.runtime.policy_versions] == [1, 2]
    assert api.runtime.current_schedule().policy_version == 2


async def test_the_site_defaults_before_any_version(api: Api) -> None:
    body = (await api.client.get(f"{SITES}/policy", headers=api.auth("manager"))).json()
    assert body["version"] is None and body["comment"] == "site defaults"


async def test_an_invalid_policy_is_422_naming_the_field(api: Api) -> None:
    response = await api.client.post(f"{SITES}/policy", headers=api.auth("manager"),
                                     json={"policy": {"weights": {"cost_weight": -1}}})
    assert response.status_code == 422
    assert response.json()["message"].startswith("body.policy.weights.cost_weight")
    assert await api.ctx.store.policies(SITE) == []


async def test_preview_runs_the_optimiser_and_writes_nothing(api: Api) -> None:
    audit_before = await api.ctx.store.db.fetch("SELECT count(*) FROM write_audit")
    response = await api.client.post(f"{SITES}/policy/preview", headers=api.auth("manager"),
                                     json={"policy": {"horizon_hours": 12, "import_limit_kw": 90}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "optimal" and body["schedule_id"] is None
    assert len(body["steps"]) == 48
    assert max(body["series"]["site.import_kw"]) <= 90 + 1e-6
    # Nothing written, nothing versioned, the schedule in force untouched.
    assert await api.ctx.store.db.fetch("SELECT count(*) FROM write_audit") == audit_before
    assert await api.ctx.store.policies(SITE) == []
    assert api.runtime.current_schedule() is None and api.runtime.arbiter.held() == {}


async def test_kpis_from_the_history(api: Api) -> None:
    response = await api.client.get(f"{SITES}/kpis?start=2026-03-07&end=2026-03-20", headers=api.auth("manager"))
    assert response.status_code == 200
    kpis = response.json()["kpis"]
    readings = history_readings(api.site, NOW - timedelta(days=HISTORY_DAYS), NOW)

    def counter_rise(address: str, lo, hi) -> float:
        values = [r.value for r in readings if r.address == address and lo <= r.ts <= hi]
        return values[-1] - values[0]

    from datetime import UTC, datetime

    lo, hi = datetime(2026, 3, 6, 23, tzinfo=UTC), datetime(2026, 3, 19, 23, tzinfo=UTC)
    assert abs(kpis["import_energy"]["value"] - counter_rise("grid-meter/import-energy", lo, hi)) < 0.05
    assert abs(kpis["export_energy"]["value"] - counter_rise("grid-meter/export-energy", lo, hi)) < 0.05
    assert abs(kpis["co2"]["value"] - kpis["import_energy"]["value"] * 0.0217) < 1e-6
    assert abs(kpis["pv_energy"]["value"] - counter_rise("rooftop-pv-inverter/energy", lo, hi)) < 0.05
    assert 0 < kpis["self_consumption"]["value"] < 1
    peak = max(r.value for r in readings if r.address == "grid-meter/power" and lo <= r.ts < hi)
    assert abs(kpis["peak_import"]["value"] - peak) < 1e-6
    assert kpis["discomfort"]["value"] > 0 and kpis["cost"]["value"] > 0
    assert kpis["plan_adherence"]["value"] is None
    # The service has issued no forecast yet: nothing to score.
    assert kpis["forecast_load_mae_1h"]["value"] is None and kpis["forecast_pv_nrmse_24h"]["value"] is None


async def test_plan_adherence_once_a_schedule_has_run(api: Api) -> None:
    await api.client.post(f"{SITES}/policy", headers=api.auth("manager"), json={"policy": {"horizon_hours": 4}})
    planned = api.runtime.current_schedule().schedule.setpoints
    # The hour after the plan was made, as measured: 5 kW above the plan, PV at 10 kW.
    measured = []
    for ts, row in planned.iloc[:4].iterrows():
        for minute in (1, 5, 10):  # 0 is taken: the history ends on the plan's first step
            at = ts.to_pydatetime() + timedelta(minutes=minute)
            measured.append(Reading("grid-meter/power", at, row["site.net_kw"] + 5.0, Quality.GOOD))
            measured.append(Reading("rooftop-pv-inverter/power", at, 10.0, Quality.GOOD))
    await api.historian.write([SiteReadings(api.site.id, measured)], received_at=NOW + timedelta(hours=1))
    api.clock.advance(timedelta(hours=1))
    kpis = (await api.client.get(f"{SITES}/kpis", headers=api.auth("manager"))).json()["kpis"]
    # Measured: each step's mean reading; the first step also holds the history's last reading.
    means = await api.historian.query(api.site.id, ["grid-meter/power", "rooftop-pv-inverter/power"], NOW,
                                      NOW + timedelta(hours=1), timedelta(minutes=15), "avg")
    gaps = (means["grid-meter/power"].to_numpy() - planned["site.net_kw"].iloc[:4].to_numpy())
    assert list(abs(gaps[1:])) == [5.0, 5.0, 5.0]
    assert abs(kpis["plan_adherence"]["value"] - float(abs(gaps).mean())) < 1e-6
    assert "over 4 steps" in kpis["plan_adherence"]["note"]


async def test_forecast_accuracy_by_lead_time_over_the_period(api: Api) -> None:
    accuracy = api.runtime.forecast_report().accuracy
    # Issued at 11:00 for the next 24 h: load 50 kW throughout, PV 20 kW.
    accuracy.issued("load", NOW, NOW, STEP, [50.0] * 96)
    accuracy.issued("pv", NOW, NOW, STEP, [20.0] * 96)
    # The load was 40 kW the first two hours, 60 kW from 18:00; PV 10 kW in the first hour.
    for k in range(96):
        quarter = NOW + STEP * k
        accuracy.actual("load", quarter, 40.0 if k < 8 else (60.0 if k >= 28 else 50.0))
        if k < 4:
            accuracy.actual("pv", quarter, 10.0)
    api.clock.advance(timedelta(days=1))
    kpis = (await api.client.get(f"{SITES}/kpis?start=2026-03-20&end=2026-03-22", headers=api.auth("manager"))
            ).json()["kpis"]
    # Up to 1 h ahead: the first four quarter-hours, all 10 kW off; 1-6 h: 4 of 20 off by 10 kW.
    assert kpis["forecast_load_mae_1h"]["value"] == 10.0
    assert abs(kpis["forecast_load_mae_6h"]["value"] - 10.0 * 4 / 20) < 1e-9
    assert abs(kpis["forecast_load_nrmse_6h"]["value"] - (100.0 * 4 / 20) ** 0.5 / ((40 * 4 + 50 * 16) / 20)) < 1e-9
    # 6-24 h: from 18:00 (after 7 h) 10 kW under.
    assert abs(kpis["forecast_load_mae_24h"]["value"] - 10.0 * (96 - 28) / 72) < 1e-9
    assert kpis["forecast_pv_mae_1h"]["value"] == 10.0 and kpis["forecast_pv_nrmse_1h"]["value"] == 1.0
    assert kpis["forecast_pv_mae_6h"]["value"] is None
    assert "over 4 quarter-hours" in kpis["forecast_load_mae_1h"]["note"]
    # A period before any forecast scores nothing.
    earlier = (await api.client.get(f"{SITES}/kpis?start=2026-03-10&end=2026-03-12", headers=api.auth("manager"))
               ).json()["kpis"]
    assert earlier["forecast_load_mae_1h"]["value"] is None


async def test_demand_response_events(api: Api) -> None:
    event = {"id": "ecowatt-3", "start": "2026-03-21T17:00:00Z", "end": "2026-03-21T20:00:00Z",
             "max_import_kw": 100, "value_eur_per_kwh": 0.35}
    created = await api.client.post(f"{SITES}/demand-response", headers=api.auth("manager"), json=event)
    assert created.status_code == 201 and created.json()["created_by"] == "manager"
    assert [e.id for e in api.runtime.demand_responses] == ["ecowatt-3"]
    duplicate = await api.client.post(f"{SITES}/demand-response", headers=api.auth("manager"), json=event)
    assert duplicate.status_code == 409
    backwards = await api.client.post(f"{SITES}/demand-response", headers=api.auth("manager"),
                                      json={**event, "id": "x", "end": "2026-03-21T16:00:00Z"})
    assert backwards.status_code == 422 and "end must be after start" in backwards.json()["message"]
    listed = (await api.client.get(f"{SITES}/demand-response", headers=api.auth("manager"))).json()
    assert [(e["event"]["id"], e["event"]["max_import_kw"]) for e in listed] == [("ecowatt-3", 100.0)]


async def test_thermal_models_identified_from_the_zones_history(api: Api) -> None:
    # The gym hall loses heat faster and stores more than its site file says (0.8 K/kW, 40 kWh/K).
    truth = ThermalModel(structure="1R1C", resistance_k_per_kw=0.5, capacitance_kwh_per_k=60.0)
    history = measure_zone(truth, days=8, seed=3, gains_kw=(5.0, 0.6))
    points = {"temperature": "gym-controller/hall-temperature", "power": "gym-controller/heat-pump-power",
              "outdoor": "heat-substation/outdoor-temperature", "occupied": "gym-controller/occupancy"}
    rows = [(history.start + STEP * k + STEP / 2,
             {points["temperature"]: float(history.indoor_c[k]), points["power"]: float(history.heat_pump_kw[k]),
              points["outdoor"]: float(history.outdoor_c[k]), points["occupied"]: float(history.occupied[k])}.get)
            for k in range(len(history))]
    forecaster = api.runtime.forecaster
    assert forecaster.warm_up(api.site, rows) == len(rows)
    end = history.start + STEP * len(history)
    await forecaster.forecast(api.site, Snapshot(end, MappingProxyType({}), MappingProxyType({})), end, 96, STEP)

    response = await api.client.get(f"{SITES}/thermal-models", headers=api.auth("manager"))
    assert response.status_code == 200
    (gym,) = response.json()
    assert gym["zone"] == "gym-hall" and gym["in_use"] == "identified"
    assert gym["site_file"]["resistance_k_per_kw"] == 0.8 and gym["site_file"]["capacitance_kwh_per_k"] == 40
    assert abs(gym["identified"]["resistance_k_per_kw"] - 0.5) < 0.1
    assert gym["held_out"]["day_ahead_rmse_k"] < gym["site_file_held_out"]["day_ahead_rmse_k"]
    assert gym["held_out"]["samples"] > 0 and gym["fitted_at"] is not None

    kpis = (await api.client.get(f"{SITES}/kpis", headers=api.auth("manager"))).json()["kpis"]
    kpi = kpis["thermal_model_rmse:gym-hall"]
    assert kpi["unit"] == "K" and kpi["value"] == gym["held_out"]["day_ahead_rmse_k"]
    assert kpi["note"].startswith("identified model in use")
    # Residents and operators don't see it.
    assert (await api.client.get(f"{SITES}/thermal-models", headers=api.auth("operator"))).status_code == 403
