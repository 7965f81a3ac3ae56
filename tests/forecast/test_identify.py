"""Thermal identification recovers a zone's model from what it measured, and says when it beats the site file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridctl.config import models as m
from gridctl.forecast.identify import NotEnoughData, identify_zone
from tests.forecast.zones import measure_zone, zone_config


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
    history = measure_zone(truth, days=10, seed=3, gains_kw=gains)
    found = identify_zone(zone_config(documented), history)
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


def test_identification_says_when_the_site_file_is_already_right() -> None:
    truth = m.ThermalModel(structure="1R1C", resistance_k_per_kw=1.2, capacitance_kwh_per_k=30.0,
                           solar_aperture_m2=15.0)
    history = measure_zone(truth, days=8, seed=5, gains_kw=(3.0, 0.5))
    found = identify_zone(zone_config(truth), history)
    # The site file is the truth here: the fit can't do much better, and both predict well.
    assert found.site_file_held_out.multi_step_rmse_k < 0.5
    assert found.held_out.multi_step_rmse_k < found.site_file_held_out.multi_step_rmse_k + 0.1


def test_identification_survives_gaps_and_refuses_too_little_data() -> None:
    truth = m.ThermalModel(structure="1R1C", resistance_k_per_kw=1.2, capacitance_kwh_per_k=30.0)
    history = measure_zone(truth, days=8, seed=7, gains_kw=(3.0, 0.5))
    rng = np.random.default_rng(1)
    for name in ("indoor_c", "heat_pump_kw", "outdoor_c"):
        values = getattr(history, name)
        for begin in rng.integers(0, len(values) - 8, size=12):
            values[begin:begin + rng.integers(1, 8)] = np.nan
    found = identify_zone(zone_config(truth), history)
    assert math.isfinite(found.held_out.multi_step_rmse_k) and found.held_out.multi_step_rmse_k < 0.6
    assert found.model.resistance_k_per_kw == pytest.approx(1.2, rel=0.15)
    with pytest.raises(NotEnoughData, match="too few"):
        identify_zone(zone_config(truth), history.part(0, 96))
