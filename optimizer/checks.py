"""Verify a schedule's setpoints against the hard limits, independently of how the model encoded them."""

from __future__ import annotations

from datetime import datetime

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
        limits = limit if isinstance(limit, list) else [limit] * len(values)
        for t, (v, lim) in enumerate(zip(values, limits, strict=True)):
            if v > lim + self.tol * max(1.0, abs(lim)):
                self.add(asset, kind, self.t0[t], self.t0[t + 1], float(v - lim), unit)

    def at_least(self, asset: str, kind: str, column: str, limit: float, unit: str) -> None:
        for t, v in enumerate(self.sp[column].to_numpy()):
            if v < limit - self.tol * max(1.0, abs(limit)):
                self.add(asset, kind, self.t0[t], self.t0[t + 1], float(limit - v), unit)

    def add(self, asset: str, kind: str, start: datetime, end: datetime, amount: float, unit: str) -> None:
        self.out.append(Violation(asset, kind, start, end, amount, unit, hard=True))

    def run(self) -> list[Violation]:
        site = self.p.site
        if site.import_limit_kw is not None:
            self.at_most("site", "import_limit", "site.import_kw", site.import_limit_kw)
        if site.export_limit_kw is not None:
            self.at_most("site", "export_limit", "site.export_kw", site.export_limit_kw)
        both = (self.sp["site.import_kw"] > self.tol) & (self.sp["site.export_kw"] > self.tol)
        for t in [i for i, b in enumerate(both) if b]:
            amount = float(min(self.sp["site.import_kw"].iloc[t], self.sp["site.export_kw"].iloc[t]))
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
        durations = self.p.durations_h()
        self.at_most(a.id, "charge_power", f"{a.id}.power_kw", a.max_charge_kw)
        for t, v in enumerate(power):
            if -v > a.max_discharge_kw + self.tol * max(1.0, a.max_discharge_kw):
                self.add(a.id, "discharge_power", self.t0[t], self.t0[t + 1], float(-v - a.max_discharge_kw), "kW")
        both = (self.sp[f"{a.id}.charge_kw"] > self.tol) & (self.sp[f"{a.id}.discharge_kw"] > self.tol)
        for t in [i for i, b in enumerate(both) if b]:
            amount = float(min(self.sp[f"{a.id}.charge_kw"].iloc[t], self.sp[f"{a.id}.discharge_kw"].iloc[t]))
            self.add(a.id, "charge_and_discharge", self.t0[t], self.t0[t + 1], amount, "kW")
        in_band = a.min_energy_kwh <= a.initial_energy_kwh <= a.top_kwh
        lo, hi = (a.min_energy_kwh, a.top_kwh) if in_band else (0.0, a.capacity_kwh)
        prev = a.initial_energy_kwh
        for t, e in enumerate(energy):
            if e < lo - self.tol or e > hi + self.tol:
                self.add(a.id, "energy_bounds", self.t0[t], self.t0[t + 1], float(max(lo - e, e - hi)), "kWh")
            # The stored energy must be reachable from the previous step within the power limits.
            step = e - prev * (1.0 - a.standing_loss_per_h * durations[t])
            up = a.max_charge_kw * a.charge_efficiency * durations[t]
            down = a.max_discharge_kw / a.discharge_efficiency * durations[t]
            if step > up + self.tol * max(1.0, up) or -step > down + self.tol * max(1.0, down):
                self.add(a.id, "energy_step", self.t0[t], self.t0[t + 1], float(abs(step)), "kWh")
            prev = e

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
