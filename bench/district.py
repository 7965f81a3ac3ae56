"""Synthetic Lille district problems for the optimiser benchmark (seeded, reproducible)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from optimizer import (
    PV,
    Battery,
    DeferrableLoad,
    DemandResponseEvent,
    EVCharger,
    EVPool,
    EVSession,
    HotWaterTank,
    LightingZone,
    Policy,
    Problem,
    PublicLightingCircuit,
    Site,
    ThermalZone,
)

START = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)


def _hphc(n: int, dt_h: float) -> list[float]:
    out = []
    for t in range(n):
        hour = (t * dt_h + 1) % 24  # Europe/Paris is UTC+1 in January
        out.append(0.1635 if hour >= 22 or hour < 6 else 0.2081)
    return out


def _tank(aid: str, rng: random.Random, hours: list[float], t: list[datetime]) -> HotWaterTank:
    """A flat's electric water heater: three draws a day (mornings and evenings, half the tank in all), half
    of them on the off-peak contactor's hours (22:00-06:00), one in seven with its legionella cycle due
    at 06:00."""
    volume = rng.choice([150.0, 200.0, 300.0])
    busy = [i for i, h in enumerate(hours) if 6.0 <= h < 8.5 or 19.0 <= h < 22.5]
    draws = [0.0] * len(hours)
    for i in rng.sample(busy, 3):
        draws[i] += volume / 6.0
    off_peak = rng.random() < 0.5
    return HotWaterTank(
        id=aid, volume_l=volume, heater_max_power_kw=rng.choice([1.2, 2.2, 3.0]),
        heating_allowed=[h >= 22 or h < 6 for h in hours] if off_peak else True,
        standing_loss_kw_per_k=rng.uniform(0.0015, 0.0025), ambient_temperature_c=18.0,
        cold_water_temperature_c=11.0, initial_temperature_c=rng.uniform(52.0, 62.0), min_temperature_c=40.0,
        draw_l=draws,
        legionella_due_by=t[min(i for i, h in enumerate(hours) if h >= 6.0)] if rng.random() < 1 / 7 else None,
    )


def district(n_assets: int, n_steps: int = 96, seed: int = 0, tanks: bool = False) -> Problem:
    """A district of `n_assets` flexible assets: EV chargers in pools, heat-pump flats, batteries,
    appliances, office lighting and street-lighting circuits, with PV, HP/HC prices and a DR event.
    With `tanks`, every other heat-pump flat is a flat's hot-water tank instead."""
    rng = random.Random(seed)
    dt_h = 24.0 / n_steps
    t = [START + timedelta(hours=i * dt_h) for i in range(n_steps + 1)]
    hours = [(i * dt_h + 1) % 24 for i in range(n_steps)]
    sun = [max(0.0, math.sin(math.pi * (h - 8.5) / 8.0)) for h in hours]
    outdoor = [3.0 + 4.0 * math.sin(math.pi * (h - 9) / 12.0) for h in hours]
    dark = [s <= 0.0 for s in sun]
    assets: list = []
    chargers: list[str] = []
    base_kw = 0.0
    for i in range(n_assets):
        kind = i % 10
        aid = f"a{i:04d}"
        if kind <= 3:
            work = kind >= 2
            arrive = rng.uniform(7.5, 9.5) if work else rng.uniform(16.0, 20.0)
            stay = rng.uniform(4.0, 9.0) if work else 24.0 - arrive + rng.uniform(-1.0, 0.0)
            arrival = START + timedelta(hours=arrive - 1)
            departure = min(arrival + timedelta(hours=stay), t[-1])
            pmax, pmin = (11.0, 4.14) if work else (7.4, 1.38)
            need = rng.uniform(4.0, 20.0)
            assets.append(EVCharger(id=aid, max_power_kw=pmax, min_power_kw=pmin, efficiency=0.92,
                                    sessions=[EVSession(arrival=arrival, departure=departure,
                                                        energy_needed_kwh=need)]))
            chargers.append(aid)
        elif kind == 5 and tanks:
            assets.append(_tank(aid, rng, hours, t))
        elif kind <= 5:
            assets.append(ThermalZone(
                id=aid, c_air_kwh_per_k=rng.uniform(2.5, 4.0), r_air_out_k_per_kw=rng.uniform(15.0, 22.0),
                initial_temperature_c=rng.uniform(18.5, 20.0), outdoor_temperature_c=outdoor,
                solar_gain_kw=[0.4 * s for s in sun], heat_pump_max_power_kw=1.5,
                occupied=[h < 8 or h >= 17 for h in hours]))
        elif kind == 6:
            cap = rng.choice([5.0, 10.0, 13.5])
            assets.append(Battery(id=aid, capacity_kwh=cap, max_charge_kw=cap / 2, max_discharge_kw=cap / 2,
                                  min_energy_kwh=0.1 * cap, initial_energy_kwh=0.5 * cap,
                                  terminal_energy_kwh=0.5 * cap, cycling_cost_eur_per_kwh=0.03))
        elif kind == 7:
            start = rng.randint(int(8 / dt_h), int(14 / dt_h))
            length = max(1, round(rng.uniform(1.0, 2.5) / dt_h))
            assets.append(DeferrableLoad(id=aid, earliest_start=t[start],
                                         finish_by=t[min(n_steps, start + length + int(6 / dt_h))],
                                         power_profile_kw=[2.0] * length))
        elif kind == 8:
            assets.append(LightingZone(id=aid, installed_power_kw=rng.uniform(1.0, 4.0), max_illuminance_lux=700.0,
                                       occupied=[8 <= h < 19 for h in hours],
                                       daylight_lux=[600.0 * s for s in sun]))
        else:
            assets.append(PublicLightingCircuit(
                id=aid, installed_power_kw=rng.uniform(2.0, 6.0), design_class="M3",
                lighting_class=["M5" if (h >= 22 or h < 6) else "M3" for h in hours], dark=dark,
                curfew=[1 <= h < 5 for h in hours], curfew_level_pct=0.0))
        base_kw += 0.4
    for k in range(0, len(chargers), 10):
        group = chargers[k:k + 10]
        assets.append(EVPool(id=f"pool{k // 10}", max_power_kw=4.0 * len(group), charger_ids=group))
    pv_kw = 1.5 * n_assets
    assets.append(PV(id="pv", forecast_kw=[pv_kw * 0.35 * s for s in sun]))
    load = [base_kw * (1.0 + 0.4 * math.sin(math.pi * (h - 12) / 12.0) ** 2) for h in hours]
    return Problem(
        start=START, n_steps=n_steps, step_minutes=60 * dt_h,
        site=Site(import_limit_kw=8.0 * n_assets, export_limit_kw=2.0 * n_assets,
                  subscribed_power_kw=4.0 * n_assets, load_kw=load,
                  import_price_eur_per_kwh=_hphc(n_steps, dt_h), export_price_eur_per_kwh=0.04,
                  carbon_kg_per_kwh=[0.03 + 0.02 * math.sin(math.pi * (h - 13) / 12.0) ** 2 for h in hours]),
        policy=Policy(carbon_eur_per_kg=0.1, peak_eur_per_kw=0.5),
        assets=assets,
        dr_events=[DemandResponseEvent(id="dr1", start=START + timedelta(hours=17), end=START + timedelta(hours=19),
                                       max_import_kw=2.5 * n_assets, value_eur_per_kwh=0.5)],
    )
