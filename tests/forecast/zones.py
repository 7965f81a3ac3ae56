"""A zone heated by a heat pump whose PI controller follows a day/night schedule, measured every quarter-hour:
the history thermal identification learns from, with a known true model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from gridctl.config import models as m
from gridctl.forecast.identify import ZoneHistory
from sim.physics.thermal import HeatPump, RcZone
from sim.physics.weather import Weather

START = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=15)
AREA_M2 = 1000.0


def zone_config(model: m.ThermalModel) -> m.ThermalZone:
    return m.ThermalZone(
        id="offices", type="thermal_zone", floor_area_m2=AREA_M2, heat_pump=m.HeatPump(max_electric_power_kw=20),
        thermal_model=model, comfort_occupied=m.ComfortBand(min_temperature_c=20, max_temperature_c=24),
        comfort_unoccupied=m.ComfortBand(min_temperature_c=16, max_temperature_c=28),
        occupancy=[m.TimeWindow(start="08:00", end="18:00", days=["mon", "tue", "wed", "thu", "fri"])],
        points={"temperature": "z/temperature", "heat_pump_power": "hp/power", "setpoint": "z/setpoint"})


def measure_zone(truth: m.ThermalModel, days: float, seed: int, gains_kw: tuple[float, float],
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
