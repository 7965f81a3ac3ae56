"""Thermal identification recovers a zone's model from what it measured, and says when it beats the site file."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridctl.config import models as m
from gridctl.forecast.identify import NotEnoughData, ZoneHistory, identify_zone
from sim.physics.thermal import HeatPump, RcZone
from sim.physics.weather import Weather

START = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=15)
AREA_M2 = 1000.0


def _zone(model: m.ThermalModel) -> m.ThermalZone:
    return m.ThermalZone(
        id="offices", type="thermal_zone", floor_area_m2=AREA_M2, heat_pump=m.HeatPump(max_electric_power_kw=20),
        thermal_model=model, comfort_occupied=m.ComfortBand(min_temperature_c=20, max_temperature_c=24),
        comfort_unoccupied=m.ComfortBand(min_temperature_c=16, max_temperature_c=28),
        occupancy=[m.TimeWindow(start="08:00", end="18:00", days=["mon", "tue", "wed", "thu", "fri"])],
        points={"temperature": "z/temperature", "heat_pump_power": "hp/power", "setpoint": "z/setpoint"})


def _measure(truth: m.ThermalModel, days: float, seed: int, gains_kw: tuple[float, float],
             noise_k: float = 0.05) -> ZoneHistory:
    """A zone with the true model, heated by a heat pump whose PI controller follows a day/night
    schedule, measured every step with a noisy sensor (0.1 K resolution)."""
    two = truth.structure == "2R2C"
    zone = RcZone(truth.resistance_k_per_kw, truth.capacitance_kwh_per_k,
                  truth.envelope_resistance_k_per_kw if two else None,
                  truth.envelope_capacitance_kwh_per_k if two else None, air_temperature_c=19.0,
                  envelope_temperature_c=16.0)
    pump = HeatPump(20.0)
    weather = Weather(seed=seed)
    rng = np.random.default_rng(seed)
    n = int(timedelta(days=days) / STEP)
    indoor, power, outdoor, ghi, occupied = (np.zeros(n) for _ in range(5))
    for k in range(n):
        moment = START + STEP * k
        sample = weather.sample(moment)
        local_hour = (moment.hour + 1) % 24
        busy = moment.weekday() < 5 and 8 <= local_hour < 18
        setpoint = 21.0 if busy else (17.0 if local_hour < 5 or local_hour >= 20 else 19.0)
        indoor[k] = round((zone.air_temperature_c + noise_k * rng.standard_normal()) / 0.1) * 0.1
        outdoor[k], ghi[k], occupied[k] = sample.temperature_c, sample.ghi_w_per_m2, busy
        energy = 0.0
        for _ in range(15):  # the plant runs in 1-minute steps, the history keeps 15-minute means
            heat = pump.control(60.0, setpoint, zone.air_temperature_c, sample.temperature_c)
            gains = (gains_kw[0] if busy else gains_kw[1]) + truth.solar_aperture_m2 * sample.ghi_w_per_m2 / 1000
            zone.advance(60.0, sample.temperature_c, heat + gains)
            energy += pump.electric_power_kw / 15.0
        power[k] = energy
    return ZoneHistory(START, STEP, indoor, power, outdoor, ghi, occupied.astype(bool))


@pytest.mark.parametrize("structure", ["1R1C", "2R2C"])
def test_identification_recovers_the_true_model_and_beats_a_wrong_site_file(structure: str) -> None:
    if structure == "1R1C":
        truth = m.ThermalModel(structure="1R1C", resistance_k_per_kw=1.2, capacitance_kwh_per_k=30.0,
                               solar_aperture_m2=15.0)
        documented = m.ThermalModel(structure="1R1C", resistance_k_per_kw=2.0, capacitance_kwh_per_k=20.0,
                                    solar_aperture_m2=10.0)
    else:
        truth = m.ThermalModel(structure="2R2C", resistance_k_per_kw=0.4, capacitance_kwh_per_k=8.0,
                               envelope_resistance_k_per_kw=0.8, envelope_capacitance_kwh_per_k=60.0,
                               solar_aperture_m2=15.0)
        documented = m.ThermalModel(structure="2R2C", resistance_k_per_kw=0.6, capacitance_kwh_per_k=5.0,
                                    envelope_resistance_k_per_kw=1.3, envelope_capacitance_kwh_per_k=40.0,
                                    solar_aperture_m2=10.0)
    gains = (4.0, 0.6)
    history = _measure(truth, days=10, seed=3, gains_kw=gains)
    found = identify_zone(_zone(documented), history)
    model = found.model
    true_loss = truth.resistance_k_per_kw + (truth.envelope_resistance_k_per_kw or 0.0)
    found_loss = model.resistance_k_per_kw + (model.envelope_resistance_k_per_kw or 0.0)
    # Stated accuracy: the steady-state heat loss within 10 %, the total capacity within 25 %,
    # the occupied gains within 1.5 kW; predictions a day ahead within 0.5 K on held-out days.
    assert found_loss == pytest.approx(true_loss, rel=0.10)
    true_c = truth.capacitance_kwh_per_k + (truth.envelope_capacitance_kwh_per_k or 0.0)
    found_c = model.capacitance_kwh_per_k + (model.envelope_capacitance_kwh_per_k or 0.0)
    assert found_c == pytest.approx(true_c, rel=0.25)
    assert found.internal_gain_occupied_kw == pytest.approx(gains[0], abs=1.5)
    assert found.held_out.one_step_rmse_k < 0.15
    assert found.held_out.multi_step_rmse_k < 0.5
    assert found.better_than_site_file
    assert found.site_file_held_out.multi_step_rmse_k > 1.5 * found.held_out.multi_step_rmse_k
    assert found.as_dict()["better_than_site_file"] is True


def test_identification_says_when_the_site_file_is_already_right() -> None:
    truth = m.ThermalModel(structure="1R1C", resistance_k_per_kw=1.2, capacitance_kwh_per_k=30.0,
                           solar_aperture_m2=15.0)
    history = _measure(truth, days=8, seed=5, gains_kw=(3.0, 0.5))
    found = identify_zone(_zone(truth), history)
    # The site file is the truth here: the fit can't do much better, and both predict well.
    assert found.site_file_held_out.multi_step_rmse_k < 0.5
    assert found.held_out.multi_step_rmse_k < found.site_file_held_out.multi_step_rmse_k + 0.1


def test_identification_survives_gaps_and_refuses_too_little_data() -> None:
    truth = m.ThermalModel(structure="1R1C", resistance_k_per_kw=1.2, capacitance_kwh_per_k=30.0)
    history = _measure(truth, days=8, seed=7, gains_kw=(3.0, 0.5))
    rng = np.random.default_rng(1)
    for name in ("indoor_c", "heat_pump_kw", "outdoor_c"):
        values = getattr(history, name)
        for begin in rng.integers(0, len(values) - 8, size=12):
            values[begin:begin + rng.integers(1, 8)] = np.nan
    found = identify_zone(_zone(truth), history)
    assert math.isfinite(found.held_out.multi_step_rmse_k) and found.held_out.multi_step_rmse_k < 0.6
    assert found.model.resistance_k_per_kw == pytest.approx(1.2, rel=0.15)
    with pytest.raises(NotEnoughData, match="too few"):
        identify_zone(_zone(truth), history.part(0, 96))
