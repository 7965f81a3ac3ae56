"""Turn the schedule's current step into write requests, or fall back to each asset's defaults.

Three sources of commands, in order of preference for each asset:
1. the valid schedule, when every measurement the asset depends on is fresh;
2. the asset's safe default (stale input, no valid schedule, optimiser failure);
3. the baseline: what a building runs today without gridctl (used by the `baseline` controller).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import pandas as pd

from gridctl.config import models as m
from gridctl.dispatch import WriteRequest
from gridctl.runtime import PlannedSchedule
from gridctl.service.calendar import in_any, in_window, lighting_period, next_window_start
from gridctl.service.problem import charger_power_kw
from gridctl.service.snapshot import Snapshot

# Measurements each asset type needs fresh to follow the schedule.
INPUTS: dict[str, tuple[str, ...]] = {
    "battery": ("soc",),
    "thermal_zone": ("temperature",),
    "lighting_zone": ("occupancy", "illuminance"),
    "pv": ("power",),
}
PLUGGED_STATES = {1, 2, 3}
WANTING_STATES = {1, 2}


class Mode(StrEnum):
    SAFE = "safe"
    BASELINE = "baseline"


@dataclass(frozen=True)
class Plan:
    requests: list[WriteRequest]
    # Assets on their defaults this cycle, with why.
    fallbacks: dict[str, str]


IsDark = Callable[[datetime], bool]


def stale_inputs(asset: m.AssetBase, snapshot: Snapshot) -> list[str]:
    names = INPUTS.get(getattr(asset, "type", ""), ())
    return [asset.points[n] for n in names if n in asset.points and not snapshot.is_fresh(asset.points[n])]


def plan(site: m.Site, planned: PlannedSchedule | None, snapshot: Snapshot, now: datetime,
         is_dark: IsDark, import_limit_kw: float | None = None, correct: bool = True) -> Plan:
    """Commands for this cycle from the schedule, with per-asset fallbacks. `import_limit_kw` is the
    import allowed now (policy, demand response), the site's connection limit when None."""
    requests: list[WriteRequest] = []
    fallbacks: dict[str, str] = {}
    valid = planned is not None and planned.created_at <= now < planned.valid_until
    row = _row(planned.schedule.setpoints, now) if valid and planned is not None else None
    for asset in site.assets:
        stale = stale_inputs(asset, snapshot)
        if row is None:
            reason = "no valid schedule" if planned is None else "schedule expired"
        elif stale:
            reason = f"stale input {', '.join(stale)}"
        else:
            assert planned is not None
            requests.extend(_from_schedule(site, asset, planned, row, now, snapshot,
                                           import_limit_kw or site.grid.import_limit_kw, correct))
            continue
        fallbacks[asset.id] = reason
        requests.extend(defaults(site, asset, snapshot, now, is_dark, Mode.SAFE, reason))
    return Plan(requests, fallbacks)


def baseline(site: m.Site, snapshot: Snapshot, now: datetime, is_dark: IsDark) -> list[WriteRequest]:
    """What the site's equipment would be told without gridctl."""
    out = []
    for asset in site.assets:
        out.extend(defaults(site, asset, snapshot, now, is_dark, Mode.BASELINE, "baseline"))
    return out


def _row(frame: pd.DataFrame, now: datetime) -> pd.Series | None:
    if frame.empty:
        return None
    position = int(frame.index.searchsorted(pd.Timestamp(now), side="right")) - 1
    if position < 0:
        return None
    return frame.iloc[position]


def _next_row(frame: pd.DataFrame, now: datetime) -> pd.Series | None:
    position = int(frame.index.searchsorted(pd.Timestamp(now), side="right"))
    return frame.iloc[position] if position < len(frame) else None


def _request(address: str, value: float | bool, reason: str, planned: PlannedSchedule | None = None,
             actor: str = "gridctl:optimizer") -> WriteRequest:
    return WriteRequest(address, value, actor, reason,
                        schedule_id=planned.schedule_id if planned else None,
                        policy_version=planned.policy_version if planned else None)


def _get(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _from_schedule(site: m.Site, asset: m.AssetBase, planned: PlannedSchedule, row: pd.Series, now: datetime,
                   snapshot: Snapshot, import_limit_kw: float, correct: bool) -> list[WriteRequest]:
    reason = f"schedule {planned.schedule_id}"
    out: list[WriteRequest] = []
    if isinstance(asset, m.BatteryAsset):
        power = _get(row, f"{asset.id}.power_kw")
        if power is not None and correct:
            power = _track_planned_exchange(site, asset, power, row, snapshot, len(_batteries(site)))
        if power is not None:
            out.append(_request(asset.points["power_setpoint"], round(power, 1), reason, planned))
    elif isinstance(asset, m.EvChargerPool):
        power_kw = _serve_unplanned_cars(asset, planned, row, snapshot, import_limit_kw, offer_empty=correct)
        for charger in asset.chargers:
            out.append(_request(charger.points["current_limit"], current_for(charger, power_kw[charger.id]), reason,
                                planned))
    elif isinstance(asset, m.ThermalZone):
        following = _next_row(planned.schedule.setpoints, now)
        target = _get(following if following is not None else row, f"{asset.id}.temperature_c")
        heating = (_get(row, f"{asset.id}.power_kw") or 0.0) > 0.05
        band = asset.comfort_occupied if in_any(now, asset.occupancy, site.tz) else asset.comfort_unoccupied
        if target is not None:
            # The local controller heats to whatever it is given: when the plan coasts on free gains,
            # give it the band's floor, not the warmer temperature the plan expects to float to.
            setpoint = target if heating else band.min_temperature_c
            setpoint = min(max(setpoint, band.min_temperature_c), band.max_temperature_c)
            out.append(_request(asset.points["setpoint"], round(setpoint, 1), reason, planned))
    elif isinstance(asset, m.DeferrableAppliance):
        power = _get(row, f"{asset.id}.power_kw") or 0.0
        out.append(_request(asset.points["start"], power > 1e-6, reason, planned))
    elif isinstance(asset, m.LightingZone):
        dimming = _get(row, f"{asset.id}.dimming_pct")
        if dimming is not None:
            # The plan rests on a daylight forecast; the sensors say what is needed right now.
            dimming = max(dimming, daylight_harvesting_dimming(asset, snapshot))
            out.append(_request(asset.points["dimming"], round(dimming, 1), reason, planned))
    elif isinstance(asset, m.PublicLightingCircuit):
        dimming = _get(row, f"{asset.id}.dimming_pct")
        if dimming is not None:
            # The plan's darkness comes from the sun's position; the cabinet's photocell sees the sky.
            if photocell_dark(site, asset, snapshot):
                dimming = max(dimming, street_level(asset, now, site.tz))
            out.append(_request(asset.points["dimming"], round(dimming, 1), reason, planned))
    elif isinstance(asset, m.PvArray) and "curtailment_limit" in asset.points:
        power = _get(row, f"{asset.id}.power_kw") or 0.0
        curtailed = _get(row, f"{asset.id}.curtailed_kw") or 0.0
        rated = asset.inverter_max_power_kw or asset.peak_power_kwp
        limit = 100.0 if curtailed < 1e-3 else min(100.0, max(0.0, 100.0 * power / rated))
        out.append(_request(asset.points["curtailment_limit"], round(limit, 1), reason, planned))
    return out


def daylight_harvesting_dimming(asset: m.LightingZone, snapshot: Snapshot, margin: float = 1.05) -> float:
    """Dimming that tops the measured daylight up to the required level while someone is there."""
    present = snapshot.value(asset.points["occupancy"])
    illuminance = snapshot.number(asset.points["illuminance"])
    dimming = snapshot.number(asset.points["dimming"])
    if not present or illuminance is None or dimming is None:
        return 0.0
    daylight = max(illuminance - dimming / 100.0 * asset.rated_illuminance_lx, 0.0)
    missing = asset.required_illuminance_lx * margin - daylight
    return min(max(100.0 * missing / asset.rated_illuminance_lx, 0.0), 100.0)


def photocell_dark(site: m.Site, asset: m.PublicLightingCircuit, snapshot: Snapshot) -> bool:
    device_id = asset.points["dimming"].partition("/")[0]
    device = site.device(device_id)
    if not any(p.id == "photocell-dark" for p in device.points):
        return False
    return bool(snapshot.value(f"{device_id}/photocell-dark"))


def street_level(asset: m.PublicLightingCircuit, now: datetime, tz) -> float:
    """The level the circuit's lighting class asks for now (the commune's periods and curfew)."""
    period = lighting_period(now, asset.periods, tz)
    level = period.dimming_pct if period else 100.0
    if asset.curfew is not None and in_window(now, asset.curfew, tz):
        level = min(level, asset.minimum_dimming_pct)
    return level


def current_for(charger: m.EvCharger, power_kw: float) -> float:
    """Current limit giving `power_kw`, 0 below the charger's minimum (it would not charge anyway)."""
    if power_kw <= 1e-6:
        return 0.0
    amps = power_kw * 1000.0 / (charger.voltage_v * charger.phases)
    if amps < charger.min_current_a - 1e-6:
        return 0.0
    return round(min(amps, charger.max_current_a), 1)


def _batteries(site: m.Site) -> list[m.BatteryAsset]:
    return [a for a in site.assets if isinstance(a, m.BatteryAsset)]


def _track_planned_exchange(site: m.Site, battery: m.BatteryAsset, planned_kw: float, row: pd.Series,
                            snapshot: Snapshot, batteries: int) -> float:
    """The battery's power this cycle: the plan's, trimmed so the site does not exchange more with the
    grid than the plan expected. When load or PV differ from their forecasts, a battery that discharged
    as planned would export (worth little) or one that charged as planned would import (at full
    price); trimming keeps that energy for when the plan needs it, and the next plan starts from the
    state of charge actually reached. The battery never goes past what the plan asked, nor turns."""
    planned_net = _get(row, "site.net_kw")
    address = site.grid.points.get("power")
    grid = snapshot.number(address) if address else None
    measured = snapshot.number(battery.points["power"])
    if planned_net is None or grid is None or measured is None or not snapshot.is_fresh(address or ""):
        return planned_kw
    if site.point(battery.points["power"]).unit == "W":
        measured /= 1000.0
    # What the site draws without this battery, and the battery power that makes it draw the plan's net.
    tracking_kw = measured + (planned_net - grid) / batteries
    if planned_kw < 0.0:
        return min(max(tracking_kw, planned_kw), 0.0)
    if planned_kw > 0.0:
        return max(min(tracking_kw, planned_kw), 0.0)
    return 0.0


def _serve_unplanned_cars(pool: m.EvChargerPool, planned: PlannedSchedule, row: pd.Series, snapshot: Snapshot,
                          import_limit_kw: float, offer_empty: bool = True) -> dict[str, float]:
    """Each charger's power this step: the plan's, except that a car still wanting energy which the
    plan gives nothing from now on (it arrived after the plan was made, or stays past the departure
    the plan assumed) charges as it would without gridctl, and an empty charger offers what is left,
    so a car arriving before the next plan starts at once. Both only within what the plan leaves of
    the pool's and the site's limits, cars already there first."""
    power_kw = {c.id: _get(row, f"{c.id}.power_kw") or 0.0 for c in pool.chargers}
    frame = planned.schedule.setpoints
    ahead = frame[frame.index >= row.name]
    unplanned = [c for c in pool.chargers if _wanting(snapshot, c) and power_kw[c.id] < 1e-6
                 and float(ahead.get(f"{c.id}.power_kw", pd.Series(dtype=float)).fillna(0.0).sum()) < 1e-6]
    empty = [c for c in pool.chargers if offer_empty and snapshot.number(c.points["plug_state"]) == 0
             and power_kw[c.id] < 1e-6]
    headroom_kw = pool.pool_limit_kw - sum(power_kw.values())
    planned_import = _get(row, "site.import_kw")
    if planned_import is not None:
        headroom_kw = min(headroom_kw, import_limit_kw - planned_import)
    for group in (unplanned, empty):
        if not group or headroom_kw <= 0.0:
            continue
        share_kw = headroom_kw / len(group)
        for charger in group:
            power_kw[charger.id] = min(share_kw, charger.max_power_kw)
            headroom_kw -= power_kw[charger.id]
    return power_kw


def defaults(site: m.Site, asset: m.AssetBase, snapshot: Snapshot, now: datetime, is_dark: IsDark, mode: Mode,
             reason: str) -> list[WriteRequest]:
    """The asset's commands without a schedule: safe defaults, or today's baseline behaviour."""
    actor = "gridctl:fallback" if mode == Mode.SAFE else "baseline"
    tz = site.tz

    def req(address: str, value: float | bool) -> WriteRequest:
        return _request(address, value, reason, actor=actor)

    if isinstance(asset, m.BatteryAsset):
        if mode == Mode.SAFE:
            return [req(asset.points["power_setpoint"], 0.0)]
        # Self-consumption, as a battery's own energy manager does: absorb export, cover import.
        grid = snapshot.number(site.grid.points.get("power", "")) if site.grid.points.get("power") else None
        battery = snapshot.number(asset.points["power"]) or 0.0
        if grid is None:
            return [req(asset.points["power_setpoint"], 0.0)]
        target = min(max(battery - grid, -asset.max_discharge_power_kw), asset.max_charge_power_kw)
        return [req(asset.points["power_setpoint"], round(target, 1))]
    if isinstance(asset, m.EvChargerPool):
        if mode == Mode.BASELINE:
            return [req(c.points["current_limit"], c.max_current_a) for c in asset.chargers]
        plugged = [c for c in asset.chargers if _plugged(snapshot, c)]
        share_kw = asset.pool_limit_kw / max(len(plugged), 1)
        out = []
        for charger in asset.chargers:
            amps = current_for(charger, min(share_kw, charger.max_power_kw)) if charger in plugged else 0.0
            if charger in plugged and amps == 0.0:
                amps = charger.min_current_a if charger_power_kw(charger, charger.min_current_a) <= share_kw else 0.0
            out.append(req(charger.points["current_limit"], amps))
        return out
    if isinstance(asset, m.ThermalZone):
        occupied = in_any(now, asset.occupancy, tz)
        band = asset.comfort_occupied if occupied else asset.comfort_unoccupied
        # A thermostat schedule: a degree above the band's floor.
        target = min(band.min_temperature_c + 1.0, band.max_temperature_c)
        return [req(asset.points["setpoint"], target)]
    if isinstance(asset, m.DeferrableAppliance):
        start, _end = next_window_start(now, asset.window, tz)
        running = start <= now < start + timedelta(minutes=asset.duration_min)
        return [req(asset.points["start"], running)]
    if isinstance(asset, m.LightingZone):
        return [req(asset.points["dimming"], 100.0 if in_any(now, asset.occupancy, tz) else 0.0)]
    if isinstance(asset, m.PublicLightingCircuit):
        if not (is_dark(now) or photocell_dark(site, asset, snapshot)):
            return [req(asset.points["dimming"], 0.0)]
        return [req(asset.points["dimming"], street_level(asset, now, tz))]
    if isinstance(asset, m.PvArray) and "curtailment_limit" in asset.points:
        return [req(asset.points["curtailment_limit"], 100.0)]
    return []


def _wanting(snapshot: Snapshot, charger: m.EvCharger) -> bool:
    """A car is plugged in and not full (plugged but held at 0 A, or charging)."""
    state = snapshot.number(charger.points["plug_state"])
    return state is not None and int(state) in WANTING_STATES


def _plugged(snapshot: Snapshot, charger: m.EvCharger) -> bool:
    state = snapshot.number(charger.points["plug_state"])
    return state is not None and int(state) in PLUGGED_STATES
