"""Build the optimiser's problem from a site, its policy, a snapshot and the forecasts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import optimizer as opt
from gridctl.config import models as m
from gridctl.policy import SitePolicy
from gridctl.service.calendar import in_any, lighting_period, next_window_start
from gridctl.service.forecasts import Forecasts
from gridctl.service.snapshot import Snapshot

# Heat from people, lighting and equipment, occupied and not (a calibration to refine from data).
INTERNAL_GAIN_KW_PER_M2 = 0.003
IDLE_GAIN_KW_PER_M2 = 0.0005
# A tie-breaker far below any tariff difference (0.24 c€/kWh over a day).
SOONER_EUR_PER_KWH_H = 0.0001


@dataclass
class AssetState:
    """What the controller remembers between cycles that the devices don't tell (e.g. runs done)."""

    deferrable_done: dict[str, date] = field(default_factory=dict)
    # A started appliance runs to the end of its program whatever later schedules say.
    deferrable_running_until: dict[str, datetime] = field(default_factory=dict)


def build_problem(site: m.Site, policy: SitePolicy, snapshot: Snapshot, forecasts: Forecasts,
                  state: AssetState | None = None) -> opt.Problem:
    state = state or AssetState()
    tz = site.tz
    start = forecasts.start
    n = forecasts.n_steps
    step = forecasts.step
    mids = [start + step * k + step / 2 for k in range(n)]
    grid = site.grid
    # Between equal prices, sooner is better: forecasts are surest near, and a car may leave early.
    hours_ahead = [(step * k).total_seconds() / 3600.0 for k in range(n)]
    import_price = [p + SOONER_EUR_PER_KWH_H * h for p, h in zip(forecasts.import_price_eur_per_kwh, hours_ahead,
                                                                 strict=True)]
    problem_site = opt.Site(
        import_limit_kw=policy.import_limit_kw or grid.import_limit_kw,
        export_limit_kw=grid.export_limit_kw if policy.export_limit_kw is None else policy.export_limit_kw,
        subscribed_power_kw=policy.subscribed_power_kw or grid.subscribed_power_kw,
        load_kw=forecasts.base_load_kw,
        import_price_eur_per_kwh=import_price,
        export_price_eur_per_kwh=forecasts.export_price_eur_per_kwh,
        carbon_kg_per_kwh=forecasts.carbon_kg_per_kwh,
    )
    assets: list[opt.Asset] = []
    for asset in site.assets:
        if isinstance(asset, m.BatteryAsset):
            assets.append(_battery(asset, snapshot))
        elif isinstance(asset, m.EvChargerPool):
            assets.extend(_ev_pool(asset, forecasts, policy))
        elif isinstance(asset, m.ThermalZone):
            assets.append(_thermal_zone(asset, snapshot, forecasts, policy, mids, tz))
        elif isinstance(asset, m.DeferrableAppliance):
            deferrable = _deferrable(asset, start, start + step * n, step, state, tz)
            if deferrable is not None:
                assets.append(deferrable)
        elif isinstance(asset, m.LightingZone):
            assets.append(_lighting_zone(asset, forecasts, policy, mids, tz))
        elif isinstance(asset, m.PublicLightingCircuit):
            assets.append(_public_lighting(asset, forecasts, policy, mids, tz))
        elif isinstance(asset, m.PvArray):
            assets.append(opt.PV(id=asset.id, forecast_kw=forecasts.pv_kw.get(asset.id, [0.0] * n),
                                 curtailable="curtailment_limit" in asset.points))
    events = [
        opt.DemandResponseEvent(id=e.id, start=e.start, end=e.end, max_import_kw=e.max_import_kw,
                                value_eur_per_kwh=e.value_eur_per_kwh)
        for e in policy.demand_response
        if e.end > start and e.start < start + step * n and policy.demand_response_participation
    ]
    return opt.Problem(start=start, n_steps=n, step_minutes=step.total_seconds() / 60.0, site=problem_site,
                       policy=policy.weights, assets=assets, dr_events=events)


def _battery(asset: m.BatteryAsset, snapshot: Snapshot) -> opt.Battery:
    soc = snapshot.number(asset.points["soc"])
    soc_pct = 50.0 if soc is None else min(max(soc, 0.0), 100.0)
    initial = asset.capacity_kwh * soc_pct / 100.0
    low = asset.capacity_kwh * asset.soc_min_pct / 100.0
    high = asset.capacity_kwh * asset.soc_max_pct / 100.0
    return opt.Battery(
        id=asset.id, capacity_kwh=asset.capacity_kwh, max_charge_kw=asset.max_charge_power_kw,
        max_discharge_kw=asset.max_discharge_power_kw, charge_efficiency=asset.charge_efficiency,
        discharge_efficiency=asset.discharge_efficiency, min_energy_kwh=min(low, initial),
        max_energy_kwh=max(high, initial), initial_energy_kwh=initial,
        # Hand the next horizon what this one received, so a day's arbitrage doesn't drain the battery.
        terminal_energy_kwh=min(max(initial, low), high),
        cycling_cost_eur_per_kwh=asset.cycling_cost_eur_per_kwh,
    )


def charger_power_kw(charger: m.EvCharger, current_a: float) -> float:
    return current_a * charger.voltage_v * charger.phases / 1000.0


def _ev_pool(asset: m.EvChargerPool, forecasts: Forecasts, policy: SitePolicy) -> list[opt.Asset]:
    end = forecasts.start + forecasts.step * forecasts.n_steps
    by_charger: dict[str, list[opt.EVSession]] = {c.id: [] for c in asset.chargers}
    for session in forecasts.ev_sessions:
        if session.charger_id not in by_charger or session.departure <= forecasts.start or session.arrival >= end:
            continue
        arrival = max(session.arrival, forecasts.start)
        needed = max(session.energy_needed_kwh, min(policy.ev_minimum_energy_kwh, session.energy_needed_kwh))
        by_charger[session.charger_id].append(
            opt.EVSession(arrival=arrival, departure=session.departure, energy_needed_kwh=max(needed, 0.0),
                          id=f"{session.arrival:%Y%m%dT%H%M}"))
    out: list[opt.Asset] = []
    for charger in asset.chargers:
        sessions = sorted(by_charger[charger.id], key=lambda s: s.arrival)
        # Forecast sessions of one charger must not overlap: keep the earlier one.
        kept: list[opt.EVSession] = []
        for session in sessions:
            if kept and session.arrival < kept[-1].departure:
                continue
            kept.append(session)
        out.append(opt.EVCharger(
            id=charger.id, max_power_kw=min(charger.max_power_kw, policy.ev_max_power_kw or charger.max_power_kw),
            min_power_kw=charger_power_kw(charger, charger.min_current_a), sessions=kept))
    out.append(opt.EVPool(id=asset.id, max_power_kw=asset.pool_limit_kw, charger_ids=[c.id for c in asset.chargers]))
    return out


def _comfort(asset: m.ThermalZone, policy: SitePolicy) -> tuple[tuple[float, float], tuple[float, float]]:
    occupied = asset.comfort_occupied
    unoccupied = asset.comfort_unoccupied
    override = policy.comfort.get(asset.id)
    occ = (occupied.min_temperature_c, occupied.max_temperature_c)
    unocc = (unoccupied.min_temperature_c, unoccupied.max_temperature_c)
    if override and override.occupied:
        occ = (override.occupied.min_temperature_c, override.occupied.max_temperature_c)
    if override and override.unoccupied:
        unocc = (override.unoccupied.min_temperature_c, override.unoccupied.max_temperature_c)
    return occ, unocc


def occupancy_series(asset_id: str, windows: list[m.TimeWindow], forecasts: Forecasts,
                     mids: list[datetime], tz) -> list[bool]:
    if asset_id in forecasts.occupied:
        return list(forecasts.occupied[asset_id])
    return [in_any(t, windows, tz) for t in mids]


def _thermal_zone(asset: m.ThermalZone, snapshot: Snapshot, forecasts: Forecasts, policy: SitePolicy,
                  mids: list[datetime], tz) -> opt.ThermalZone:
    model = asset.thermal_model
    override = policy.comfort.get(asset.id)
    if override is not None and override.occupied_hours is not None:
        occupied = [in_any(t, override.occupied_hours, tz) for t in mids]
    else:
        occupied = occupancy_series(asset.id, asset.occupancy, forecasts, mids, tz)
    occ, unocc = _comfort(asset, policy)
    measured = snapshot.number(asset.points["temperature"])
    initial = measured if measured is not None else (occ[0] + occ[1]) / 2
    solar = [model.solar_aperture_m2 * g / 1000.0 for g in forecasts.irradiance_w_m2]
    internal = [(INTERNAL_GAIN_KW_PER_M2 if o else IDLE_GAIN_KW_PER_M2) * asset.floor_area_m2 for o in occupied]
    common = dict(
        id=asset.id, initial_temperature_c=initial, outdoor_temperature_c=forecasts.outdoor_temperature_c,
        solar_gain_kw=solar, internal_gain_kw=internal,
        heat_pump_max_power_kw=asset.heat_pump.max_electric_power_kw,
        supply_temperature_c=asset.heat_pump.supply_temperature_c,
        carnot_fraction=asset.heat_pump.carnot_efficiency, approach_k=asset.heat_pump.approach_k,
        occupied=occupied, comfort_occupied_c=occ, comfort_unoccupied_c=unocc,
    )
    if model.structure == "1R1C":
        return opt.ThermalZone(model="1R1C", c_air_kwh_per_k=model.capacitance_kwh_per_k,
                               r_air_out_k_per_kw=model.resistance_k_per_kw, **common)
    return opt.ThermalZone(
        model="2R2C", c_air_kwh_per_k=model.capacitance_kwh_per_k, r_air_mass_k_per_kw=model.resistance_k_per_kw,
        c_mass_kwh_per_k=model.envelope_capacitance_kwh_per_k, r_mass_out_k_per_kw=model.envelope_resistance_k_per_kw,
        initial_mass_temperature_c=initial, **common)


def _deferrable(asset: m.DeferrableAppliance, start: datetime, end: datetime, step: timedelta, state: AssetState,
                tz) -> opt.DeferrableLoad | None:
    window_start, window_end = next_window_start(start, asset.window, tz)
    if state.deferrable_done.get(asset.id) == window_start.astimezone(tz).date():
        window_start, window_end = next_window_start(window_end + timedelta(seconds=1), asset.window, tz)
    if window_start >= end:
        return None
    steps = max(1, math.ceil(asset.duration_min * 60 / step.total_seconds()))
    earliest = max(window_start, start)
    finish_by = min(window_end, end)
    if finish_by - earliest < step * steps:
        return None
    return opt.DeferrableLoad(id=asset.id, earliest_start=earliest, finish_by=finish_by,
                              power_profile_kw=[asset.power_kw] * steps)


def _lighting_zone(asset: m.LightingZone, forecasts: Forecasts, policy: SitePolicy, mids: list[datetime],
                   tz) -> opt.LightingZone:
    return opt.LightingZone(
        id=asset.id, installed_power_kw=asset.installed_power_kw, max_illuminance_lux=asset.rated_illuminance_lx,
        required_illuminance_lux=policy.lighting_required_lx.get(asset.id, asset.required_illuminance_lx),
        occupied=occupancy_series(asset.id, asset.occupancy, forecasts, mids, tz),
        daylight_lux=forecasts.daylight_lux.get(asset.id, [0.0] * forecasts.n_steps),
        dr_dimming_allowance_pct=min(asset.demand_response_dimming_pct, 20.0),
    )


def _public_lighting(asset: m.PublicLightingCircuit, forecasts: Forecasts, policy: SitePolicy,
                     mids: list[datetime], tz) -> opt.PublicLightingCircuit:
    classes = [p.lighting_class for p in asset.periods] or ["M3"]
    design = min(classes, key=lambda c: (c[0], int(c[1])))  # M1 is brighter than M6
    dark = forecasts.dark or [True] * forecasts.n_steps
    per_step = []
    for t, is_dark in zip(mids, dark, strict=True):
        period = lighting_period(t, asset.periods, tz)
        per_step.append(period.lighting_class if (period and is_dark) else ("off" if not is_dark else design))
    curfew_window = policy.public_lighting_curfew or asset.curfew
    curfew = [curfew_window is not None and in_any(t, [curfew_window], tz) for t in mids]
    return opt.PublicLightingCircuit(
        id=asset.id, installed_power_kw=asset.installed_power_kw, design_class=design, lighting_class=per_step,
        dark=dark, curfew=curfew, curfew_level_pct=policy.public_lighting_curfew_level_pct,
        min_safety_pct=asset.minimum_dimming_pct,
    )
