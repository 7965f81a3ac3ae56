"""The planner uses the zone model identified from the simulated building's own measurements: on a plant
that differs from its site file, identification moves the model toward the truth and the plans predict
the zone's temperature better."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

import optimizer as opt
from drivers.base import Quality, Reading
from gridctl.assets import AssetMemory, ProblemContext, adapter_for
from gridctl.config import load_site
from gridctl.forecast.forecaster import SignalForecaster
from gridctl.forecast.identify import ThermalEstimate
from gridctl.policy import SitePolicy
from gridctl.service.snapshot import Snapshot
from gridctl.simulate.trace import measured_history, record_trace
from optimizer.thermal import carnot_cop, discretise
from sim.physics.plant import Plant

SITES = Path(__file__).resolve().parents[2] / "sites"
WINTER = datetime.fromisoformat("2026-01-12T00:00+01:00")
STEP = timedelta(minutes=15)


def _loss_resistance(model: object) -> float:
    return model.resistance_k_per_kw + (getattr(model, "envelope_resistance_k_per_kw", None) or 0.0)


def _predicted(zone: opt.ThermalZone, power_kw: list[float]) -> list[float]:
    """The zone temperature the plan's model predicts at the end of each step for the given heat-pump power."""
    ad, bd = discretise(zone, STEP.total_seconds() / 3600.0)
    cop = carnot_cop(list(zone.outdoor_temperature_c), zone.supply_temperature_c, zone.carnot_fraction,
                     zone.approach_k)
    state = np.array([zone.initial_temperature_c] if zone.model == "1R1C" else
                     [zone.initial_temperature_c, zone.initial_mass_temperature_c])
    out = []
    for k, power in enumerate(power_kw):
        heat = power * cop[k] + zone.solar_gain_kw[k] + zone.internal_gain_kw[k]
        state = ad @ state + bd @ np.array([zone.outdoor_temperature_c[k], heat])
        out.append(float(state[0]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("site_name", "zone_id", "seed"), [("zac-saint-sauveur", "gym-hall", 2),
                                                             ("zac-union", "offices", 1)])
async def test_identification_moves_the_model_toward_the_plant_and_improves_the_plans(
        site_name: str, zone_id: str, seed: int) -> None:
    site = load_site(SITES / site_name)
    plant = Plant(site, seed)
    zone = next(a for a in site.assets if a.id == zone_id)
    history = list(measured_history(site, seed, WINTER - timedelta(days=14), WINTER + timedelta(days=1), STEP))
    before = [(t, n) for t, n in history if t <= WINTER]
    after = [(t, n) for t, n in history if t > WINTER]
    forecaster = SignalForecaster()
    forecaster.warm_up(site, before)
    temperature, power_point = zone.points["temperature"], zone.points["heat_pump_power"]
    start_c = before[-1][1](temperature)
    snapshot = Snapshot(WINTER, MappingProxyType({temperature: Reading(temperature, WINTER, start_c, Quality.GOOD)}),
                        MappingProxyType({}))
    forecasts = await forecaster.forecast(site, snapshot, WINTER, 96, STEP)
    estimate = forecasts.identified[zone_id]
    assert isinstance(estimate, ThermalEstimate) and estimate.identified, estimate.reason

    # Toward the truth: heat supplied is the electric power times the site file's COP formula, so the
    # plant as identification can see it has its resistances scaled by the true over the documented COP.
    params = plant.assets[zone_id]
    cop_ratio = params["heat_pump.carnot_efficiency"].true / params["heat_pump.carnot_efficiency"].documented
    true_loss = (params["resistance_k_per_kw"].true + (params["envelope_resistance_k_per_kw"].true
                 if "envelope_resistance_k_per_kw" in params else 0.0)) * cop_ratio
    file_error = abs(math.log(_loss_resistance(zone.thermal_model) / true_loss))
    found_error = abs(math.log(_loss_resistance(estimate.model) / true_loss))
    assert found_error < 0.5 * file_error, (found_error, file_error)

    # The plans predict better: the planner's own zone model (as the optimiser gets it) fed the next day's true
    # weather and the heat pump's measured power, from the measured temperature.
    trace = record_trace(site, seed, WINTER, WINTER + timedelta(days=1), STEP)
    truth = dataclasses.replace(forecasts, outdoor_temperature_c=trace.outdoor_temperature_c,
                                irradiance_w_m2=trace.irradiance_w_m2)
    adapter = adapter_for(zone, site)
    power = [n(power_point) or 0.0 for _, n in after]
    measured = [n(temperature) for _, n in after]
    errors = {}
    for name, with_forecasts in (("identified", truth), ("site file", dataclasses.replace(truth, identified={}))):
        (planned,) = adapter.problem_assets(ProblemContext(site, SitePolicy(), snapshot, with_forecasts, AssetMemory()))
        predicted = _predicted(planned, power)
        gaps = [p - m for p, m in zip(predicted, measured, strict=True) if m is not None]
        errors[name] = math.sqrt(sum(g * g for g in gaps) / len(gaps))
    assert errors["identified"] < 0.7 * errors["site file"], errors
