"""Verify a schedule's setpoints against the hard limits, independently of how the model encoded them."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from optimizer.hot_water import tank_steps
from optimizer.problem import (
    Battery,
    DeferrableLoad,
    EVCharger,
    EVPool,
    HotWaterTank,
    LightingZone,
    Problem,
    PublicLightingCircuit,
    Settings,
    ThermalZone,
)
from optimizer.schedule import Violation


class _Checker:
    def __init__(self, problem: Problem, sp: pd.DataFrame, tol: float) -> None:
        self.p, self.sp, self.tol = problem, sp, tol
        self.t0 = problem.step_starts()
        self.out: list[Violation] = []

    def at_most(self, asset: str, kind: str, column: str, limit: list[float] | float, unit: str = "kW") -> None:
        values = self.sp[column].to_numpy()
        limits = np.broadcast_to(np.asarray(limit, dtype=float), values.shape)
        over = values > limits + self.tol * np.maximum(1.0, np.abs(limits))
        for t in np.flatnonzero(over):
            self.add(asset, kind, self.t0[t], self.t0[t + 1], float(values[t] - limits[t]), unit)

    def at_least(self, asset: str, kind: str, column: str, limit: float, unit: str) -> None:
        values = self.sp[column].to_numpy()
        for t in np.flatnonzero(values < limit - self.tol * max(1.0, abs(limit))):
            self.add(asset, kind, self.t0[t], self.t0[t + 1], float(limit - values[t]), unit)

    def add(self, asset: str, kind: str, start: datetime, end: datetime, amount: float, unit: str) -> None:
        self.out.append(Violation(asset, kind, start, end, amount, unit, hard=True))

    def run(self) -> list[Violation]:
        site = self.p.site
        if site.import_limit_kw is not None:
            self.at_most("site", "import_limit", "site.import_kw", site.import_limit_kw)
        if site.export_limit_kw is not None:
            self.at_most("site", "export_limit", "site.export_kw", site.export_limit_kw)
        imports, exports = self.sp["site.import_kw"].to_numpy(), self.sp["site.export_kw"].to_numpy()
        for t in np.flatnonzero((imports > self.tol) & (exports > self.tol)):
            amount = float(min(imports[t], exports[t]))
            self.add("site", "import_and_export", self.t0[t], self.t0[t + 1], amount, "kW")
        pools: dict[str, float] = {}
        for a in self.p.assets:
            if isinstance(a, Battery):
                self.battery(a)
            elif isinstance(a, EVCharger):
                self.charger(a)
            elif isinstance(a, EVPool):
                pools[a.id] = a.max_power_kw
                self.at_most(a.id, "pool_limit", f"{a.id}.power_kw", a.max_power_kw)
            elif isinstance(a, ThermalZone):
                self.at_most(a.id, "heat_pump_power", f"{a.id}.power_kw", a.heat_pump_max_power_kw)
                self.at_least(a.id, "heat_pump_power", f"{a.id}.power_kw", 0.0, "kW")
            elif isinstance(a, LightingZone | PublicLightingCircuit):
                self.at_most(a.id, "dimming_range", f"{a.id}.dimming_pct", 100.0, "%")
                self.at_least(a.id, "dimming_range", f"{a.id}.dimming_pct", 0.0, "%")
                if isinstance(a, PublicLightingCircuit):
                    curfew = self.p.flags(a.curfew)
                    caps = [a.curfew_level_pct if c else 100.0 for c in curfew]
                    self.at_most(a.id, "curfew", f"{a.id}.dimming_pct", caps, "%")
            elif isinstance(a, HotWaterTank):
                self.tank(a)
            elif isinstance(a, DeferrableLoad):
                starts = self.sp[f"{a.id}.started"].sum()
                if starts > 1 + self.tol:
                    self.add(a.id, "started_more_than_once", self.t0[0], self.t0[-1], float(starts), "runs")
        return self.out

    def battery(self, a: Battery) -> None:
        power = self.sp[f"{a.id}.power_kw"].to_numpy()
        energy = self.sp[f"{a.id}.energy_kwh"].to_numpy()
        durations = np.asarray(self.p.durations_h())
        tol = self.tol
        self.at_most(a.id, "charge_power", f"{a.id}.power_kw", a.max_charge_kw)
        for t in np.flatnonzero(-power > a.max_discharge_kw + tol * max(1.0, a.max_discharge_kw)):
            self.add(a.id, "discharge_power", self.t0[t], self.t0[t + 1], float(-power[t] - a.max_discharge_kw), "kW")
        charge = self.sp[f"{a.id}.charge_kw"].to_numpy()
        discharge = self.sp[f"{a.id}.discharge_kw"].to_numpy()
        for t in np.flatnonzero((charge > tol) & (discharge > tol)):
            amount = float(min(charge[t], discharge[t]))
            self.add(a.id, "charge_and_discharge", self.t0[t], self.t0[t + 1], amount, "kW")
        in_band = a.min_energy_kwh <= a.initial_energy_kwh <= a.top_kwh
        lo, hi = (a.min_energy_kwh, a.top_kwh) if in_band else (0.0, a.capacity_kwh)
        outside = (energy < lo - tol) | (energy > hi + tol)
        # The stored energy must be reachable from the previous step within the power limits.
        prev = np.concatenate(([a.initial_energy_kwh], energy[:-1]))
        step = energy - prev * (1.0 - a.standing_loss_per_h * durations)
        up = a.max_charge_kw * a.charge_efficiency * durations
        down = a.max_discharge_kw / a.discharge_efficiency * durations
        jump = (step > up + tol * np.maximum(1.0, up)) | (-step > down + tol * np.maximum(1.0, down))
        for t in np.flatnonzero(outside | jump):
            e = energy[t]
            if outside[t]:
                self.add(a.id, "energy_bounds", self.t0[t], self.t0[t + 1], float(max(lo - e, e - hi)), "kWh")
            if jump[t]:
                self.add(a.id, "energy_step", self.t0[t], self.t0[t + 1], float(abs(step[t])), "kWh")

    def tank(self, a: HotWaterTank) -> None:
        power = self.sp[f"{a.id}.power_kw"].to_numpy()
        allowed = self.p.flags(a.heating_allowed)
        top = a.heater_max_power_kw
        self.at_most(a.id, "heater_power", f"{a.id}.power_kw", top)
        self.at_least(a.id, "heater_power", f"{a.id}.power_kw", 0.0, "kW")
        for t, v in enumerate(power):
            span = (self.t0[t], self.t0[t + 1])
            if not allowed[t] and v > self.tol:
                self.add(a.id, "heating_not_allowed", *span, float(v), "kW")
            elif a.on_off and self.tol < v < top - self.tol * max(1.0, top):
                self.add(a.id, "heater_not_on_off", *span, float(min(v, top - v)), "kW")
        # The temperatures must follow from the planned power, and stay under the maximum unless the tank
        # would be above it anyway without heating.
        steps = tank_steps(a, self.p)
        e0 = steps.energy_kwh(a, a.initial_temperature_c)
        heated = steps.simulate(e0, [float(v) for v in power])
        free = steps.simulate(e0, [0.0] * len(power))
        planned = self.sp[f"{a.id}.temperature_c"].to_numpy()
        for t, (e, f, got) in enumerate(zip(heated, free, planned, strict=True)):
            want = steps.temperature_c(a, e)
            span = (self.t0[t], self.t0[t + 1])
            if abs(got - want) > self.tol * max(1.0, abs(want)):
                self.add(a.id, "temperature_trajectory", *span, float(abs(got - want)), "K")
            ceiling = max(a.max_temperature_c, steps.temperature_c(a, f))
            if want > ceiling + self.tol * max(1.0, ceiling):
                self.add(a.id, "max_temperature", *span, float(want - ceiling), "K")

    def charger(self, a: EVCharger) -> None:
        self.at_most(a.id, "charger_power", f"{a.id}.power_kw", a.max_power_kw)
        if a.min_power_kw > 0:
            for t, v in enumerate(self.sp[f"{a.id}.power_kw"].to_numpy()):
                if self.tol < v < a.min_power_kw - self.tol:
                    self.add(a.id, "below_min_power", self.t0[t], self.t0[t + 1], float(a.min_power_kw - v), "kW")


def hard_limit_violations(problem: Problem, setpoints: pd.DataFrame, settings: Settings) -> list[Violation]:
    return _Checker(problem, setpoints, settings.hard_limit_tolerance).run()
