"""KPIs of a replay, for the period and per local day, and the policy's objective evaluated on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from gridctl.backtest.plant import Plant
from gridctl.backtest.recording import CARBON, EXPORT_PRICE, PRICE, Recording
from gridctl.backtest.replay import Replay, truth
from gridctl.config import models as m
from gridctl.policy import SitePolicy

# What each KPI means, for reports and the README.
MEANINGS = {
    "import_kwh": "energy imported from the grid",
    "export_kwh": "energy exported to the grid",
    "cost": "import × price − export × export price, in the data's currency",
    "co2_kg": "import × carbon intensity",
    "peak_kw": "highest import over one step",
    "mean_daily_peak_kw": "mean over the days of each day's highest import",
    "ramping_kw": "sum of the absolute changes of net import from one step to the next",
    "load_factor": "mean import over peak import (1: flat)",
    "ev_requested_kwh": "energy the cars that left asked for",
    "ev_undelivered_kwh": "energy the cars that left did not get",
    "battery_throughput_kwh": "energy the batteries discharged",
    "battery_cycles": "equivalent full cycles: throughput over the batteries' usable capacity",
    "battery_stored_delta_kwh": "energy in the batteries at the end minus at the start",
    "pv_curtailed_kwh": "PV production curtailed",
    "objective": "the policy's objective on what happened (cost, carbon, peak, cycling, energy left short, "
                 "cars' unmet energy): what the oracle minimises",
}


@dataclass
class Kpis:
    period: dict[str, float]
    daily: pd.DataFrame


def kpis(replay: Replay, site: m.Site, recording: Recording, policy: SitePolicy, start: datetime,
         end: datetime) -> Kpis:
    trace = replay.trace
    step = recording.step
    hours = step.total_seconds() / 3600.0
    first, last = recording.position(start), recording.position(end)
    signals = truth(site, recording, first, last)
    net = trace["site.net_kw"].to_numpy()
    imported = np.maximum(net, 0.0)
    exported = np.maximum(-net, 0.0)
    cost = imported * signals[PRICE] * hours - exported * signals[EXPORT_PRICE] * hours
    co2 = imported * signals[CARBON] * hours
    ramps = np.abs(np.diff(net, prepend=net[0]))
    local_day = trace.index.tz_convert(site.tz).date
    frame = pd.DataFrame({"import_kwh": imported * hours, "export_kwh": exported * hours, "cost": cost,
                          "co2_kg": co2, "import_kw": imported, "ramping_kw": ramps}, index=trace.index)
    grouped = frame.groupby(local_day)
    daily = pd.DataFrame({
        "import_kwh": grouped["import_kwh"].sum(), "export_kwh": grouped["export_kwh"].sum(),
        "cost": grouped["cost"].sum(), "co2_kg": grouped["co2_kg"].sum(),
        "peak_kw": grouped["import_kw"].max(), "ramping_kw": grouped["ramping_kw"].sum(),
    })
    mean_import = grouped["import_kw"].mean()
    daily["load_factor"] = (mean_import / daily["peak_kw"]).where(daily["peak_kw"] > 0, 0.0)
    daily.index.name = "date"
    plant = replay.plant
    batteries = plant.batteries()
    usable = sum(b.high_kwh - b.low_kwh for b in batteries)
    throughput = sum(b.discharged_kwh for b in batteries)
    stored = sum(b.energy_kwh - b.initial_kwh for b in batteries)
    asked = undelivered = 0.0
    for charger in plant.chargers():
        a, u = charger.unmet_kwh(end)
        asked, undelivered = asked + a, undelivered + u
    curtailed = float(sum(trace[c].sum() for c in trace.columns if c.endswith(".curtailed_kw")) * hours)
    peak = float(imported.max()) if len(imported) else 0.0
    period = {
        "import_kwh": float(imported.sum() * hours), "export_kwh": float(exported.sum() * hours),
        "cost": float(cost.sum()), "co2_kg": float(co2.sum()), "peak_kw": peak,
        "mean_daily_peak_kw": float(daily["peak_kw"].mean()) if len(daily) else 0.0,
        "ramping_kw": float(ramps.sum()), "load_factor": float(imported.mean() / peak) if peak > 0 else 0.0,
        "ev_requested_kwh": asked, "ev_undelivered_kwh": undelivered,
        "battery_throughput_kwh": throughput, "battery_cycles": throughput / usable if usable > 0 else 0.0,
        "battery_stored_delta_kwh": stored, "pv_curtailed_kwh": curtailed,
    }
    period["objective"] = objective(period, plant, site, policy, imported, hours, co2.sum())
    return Kpis(period, daily)


def objective(period: dict[str, float], plant: Plant, site: m.Site, policy: SitePolicy, imported: np.ndarray,
              hours: float, co2_kg: float) -> float:
    """The terms of the optimiser's objective that a replay of these assets can incur, on what happened."""
    weights = policy.weights
    subscribed = policy.subscribed_power_kw or site.grid.subscribed_power_kw
    overshoot = float(np.maximum(imported - subscribed, 0.0).sum() * hours)
    cycling = sum(b.discharged_kwh * b.asset.cycling_cost_eur_per_kwh for b in plant.batteries())
    # Each battery is asked to end with what it started with; what it lacks is priced as in the plans.
    short = sum(max(b.initial_kwh - b.energy_kwh, 0.0) for b in plant.batteries())
    return (weights.cost_weight * period["cost"] + weights.carbon_eur_per_kg * co2_kg
            + weights.peak_eur_per_kw * period["peak_kw"] + weights.overshoot_eur_per_kw_h * overshoot
            + cycling + weights.terminal_soc_eur_per_kwh * short
            + weights.ev_unmet_eur_per_kwh * period["ev_undelivered_kwh"])


def share_of_oracle_saving(period: dict[str, dict[str, float]], key: str = "cost") -> float | None:
    """(baseline − gridctl) / (baseline − oracle) of a KPI; None when the oracle saves nothing."""
    if not all(c in period for c in ("baseline", "gridctl", "oracle")):
        return None
    possible = period["baseline"][key] - period["oracle"][key]
    if possible <= 1e-9:
        return None
    return (period["baseline"][key] - period["gridctl"][key]) / possible
