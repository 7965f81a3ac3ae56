"""Build the MILP for a Problem in one pass.

Every expression is created once from a list of (variable, coefficient) pairs; nothing is grown with
`+=`, so building is linear in the number of non-zeros. Each asset adds its variables, its constraints,
its share of the site balance, its objective terms, the slacks that become violations, and the output
columns of the schedule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import pulp

from optimizer.highs import WarmStart
from optimizer.hot_water import TankSteps, tank_steps
from optimizer.problem import (
    LIGHTING_CLASS_LEVELS,
    PV,
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
from optimizer.thermal import carnot_cop, discretise

Terms = list[tuple[pulp.LpVariable, float]]

# Inputs below this are rounding noise (or subnormal floats, which solvers handle badly): read them as 0.
_TINY = 1e-9


def _clean(x: float) -> float:
    return 0.0 if abs(x) < _TINY else float(x)


# Unit of each objective term, in report order.
TERM_UNITS: dict[str, str] = {
    "energy_cost": "EUR",
    "carbon": "kg",
    "peak": "kW",
    "power_overshoot": "kW·h",
    "battery_cycling": "kWh",
    "pv_curtailment": "kWh",
    "discomfort": "K·h",
    "ev_unmet": "kWh",
    "under_illumination": "lx·h",
    "public_lighting_shortfall": "%·h",
    "dr_noncompliance": "kWh",
    "terminal_soc_shortfall": "kWh",
    "battery_out_of_band": "kWh·h",
    "deferrable_not_run": "runs",
    "hot_water_shortfall": "K·h",
    "legionella_shortfall": "K",
    "hard_limit_relief": "kWh",
}


@dataclass
class Slack:
    """A slack variable whose positive value is a violation of `kind` on `asset_id` over [start, end)."""

    asset_id: str
    kind: str
    unit: str
    start: datetime
    end: datetime
    var: pulp.LpVariable
    amount_per_unit: float
    hard: bool = False


@dataclass
class Column:
    """An output column: per step, constant + Σ coef·var."""

    terms: list[Terms]
    const: list[float]


@dataclass
class SessionVars:
    """An EV session's variables, kept for the LP-rounding start."""

    charger_id: str
    steps: list[int]
    power: list[pulp.LpVariable]
    on: list[pulp.LpVariable]
    hours: list[float]
    min_kw: float
    max_kw: float
    need_kwh: float
    efficiency: float


@dataclass
class TankSwitches:
    """A tank's binaries by step (contactor on, legionella temperature reached there), and what a rounding
    needs to keep the tank physical."""

    on: dict[int, pulp.LpVariable]
    legionella: dict[int, pulp.LpVariable]
    legionella_kwh: float
    energy: list[pulp.LpVariable]
    steps: TankSteps
    power_kw: float
    initial_kwh: float
    ceiling_kwh: list[float]


@dataclass
class Switches:
    """Binary variables by role, so a heuristic can round them with some sense of the physics."""

    sessions: list[SessionVars] = field(default_factory=list)
    pools: list[tuple[float, list[str]]] = field(default_factory=list)
    deferrable_starts: list[list[pulp.LpVariable]] = field(default_factory=list)
    tanks: list[TankSwitches] = field(default_factory=list)
    # (binary, flow allowed when 1, flow allowed when 0)
    directions: list[tuple[pulp.LpVariable, pulp.LpVariable, pulp.LpVariable]] = field(default_factory=list)


@dataclass
class Model:
    prob: pulp.LpProblem
    problem: Problem
    # Per term: (var, amount in the term's unit, € in the objective).
    terms: dict[str, list[tuple[pulp.LpVariable, float, float]]]
    slacks: list[Slack]
    columns: dict[str, Column]
    n_binaries: int
    notes: list[str] = field(default_factory=list)
    switches: Switches = field(default_factory=Switches)
    binaries: list[pulp.LpVariable] = field(default_factory=list)
    site_flows: list[tuple[pulp.LpVariable, pulp.LpVariable]] = field(default_factory=list)
    # Set by the solve: the columns HiGHS was given, and the optimal LP's basis for the next solve.
    n_variables: int | None = None
    warm_start: WarmStart | None = None


class _Builder:
    def __init__(self, problem: Problem, settings: Settings) -> None:
        self.p = problem
        self.s = settings
        self.n = problem.steps
        self.dt = problem.durations_h()
        self.t0 = problem.step_starts()
        self.prob = pulp.LpProblem("gridctl", pulp.LpMinimize)
        self.balance: list[Terms] = [[] for _ in range(self.n)]
        self.fixed_load = problem.series(problem.site.load_kw)
        self.terms: dict[str, list[tuple[pulp.LpVariable, float, float]]] = defaultdict(list)
        self.slacks: list[Slack] = []
        self.columns: dict[str, Column] = {}
        self.n_binaries = 0
        self.binaries: list[pulp.LpVariable] = []
        self.switches = Switches()
        self.notes: list[str] = []
        self._count = 0
        self.pol = problem.policy
        self.import_price = problem.series(problem.site.import_price_eur_per_kwh)
        self.export_price = problem.series(problem.site.export_price_eur_per_kwh)
        self.dr_steps = self._dr_steps()

    # -- helpers -------------------------------------------------------------------------------------

    def var(self, lb: float | None = 0.0, ub: float | None = None, binary: bool = False) -> pulp.LpVariable:
        self._count += 1
        if binary:
            self.n_binaries += 1
            v = self.prob.add_variable(f"b{self._count}", 0, 1, pulp.LpBinary)
            self.binaries.append(v)
            return v
        if lb is not None and lb != 0.0:
            lb = _clean(lb)
        if ub is not None:
            ub = _clean(ub)
        return self.prob.add_variable(f"x{self._count}", lb, ub)

    def con(self, terms: Terms, sense: int, rhs: float) -> None:
        # A dict is the quickest form PuLP takes an expression in.
        kept = {v: c for v, c in terms if c >= _TINY or c <= -_TINY}
        self.prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(kept), sense, None, _clean(rhs)))

    def term(self, name: str, var: pulp.LpVariable, amount: float, eur: float) -> None:
        self.terms[name].append((var, amount, eur))

    def slack(self, asset_id: str, kind: str, unit: str, t: int, var: pulp.LpVariable, per: float) -> None:
        self.slacks.append(Slack(asset_id, kind, unit, self.t0[t], self.t0[t + 1], var, per))

    def column(self, name: str, terms: list[Terms] | None = None, const: list[float] | None = None) -> None:
        self.columns[name] = Column(terms or [[] for _ in range(self.n)], const or [0.0] * self.n)

    def overlap_h(self, start: datetime, end: datetime) -> list[float]:
        """Hours of each step that fall inside [start, end)."""
        out = []
        for t in range(self.n):
            a, b = max(start, self.t0[t]), min(end, self.t0[t + 1])
            out.append(max(0.0, (b - a).total_seconds() / 3600.0))
        return out

    def _dr_steps(self) -> list[bool]:
        flags = [False] * self.n
        for ev in self.p.dr_events:
            for t, h in enumerate(self.overlap_h(ev.start, ev.end)):
                flags[t] = flags[t] or h > 0
        return flags

    # -- assets --------------------------------------------------------------------------------------

    def pv(self, a: PV) -> None:
        f = [max(0.0, v) for v in self.p.series(a.forecast_kw)]
        if not a.curtailable:
            for t in range(self.n):
                self.fixed_load[t] -= f[t]
            self.column(f"{a.id}.power_kw", const=f)
            self.column(f"{a.id}.curtailed_kw")
            return
        # What is cut, so that cutting costs a little: without a cost, curtailing ties with exporting for
        # nothing, and a plan that curtails would cap the inverter when the sun beats the forecast.
        cut = [self.var(0.0, f[t]) for t in range(self.n)]
        for t in range(self.n):
            self.fixed_load[t] -= f[t]
            self.balance[t].append((cut[t], 1.0))
            self.term("pv_curtailment", cut[t], self.dt[t], self.pol.curtailment_eur_per_kwh * self.dt[t])
        self.column(f"{a.id}.power_kw", [[(v, -1.0)] for v in cut], f)
        self.column(f"{a.id}.curtailed_kw", [[(v, 1.0)] for v in cut])

    def battery(self, a: Battery, exclusive: list[bool]) -> None:
        lo, hi = a.min_energy_kwh, a.top_kwh
        out_of_band = not lo <= a.initial_energy_kwh <= hi
        ch = [self.var(0.0, a.max_charge_kw) for _ in range(self.n)]
        dis = [self.var(0.0, a.max_discharge_kw) for _ in range(self.n)]
        if out_of_band:
            # A battery found outside its band (e.g. deep-discharged) may come back gradually.
            e = [self.var(0.0, a.capacity_kwh) for _ in range(self.n)]
            for t in range(self.n):
                below, above = self.var(), self.var()
                self.con([(e[t], 1.0), (below, 1.0)], pulp.LpConstraintGE, lo)
                self.con([(e[t], 1.0), (above, -1.0)], pulp.LpConstraintLE, hi)
                for v in (below, above):
                    self.term("battery_out_of_band", v, self.dt[t], self.pol.terminal_soc_eur_per_kwh * self.dt[t])
                    self.slack(a.id, "energy_out_of_band", "kWh·h", t, v, self.dt[t])
        else:
            e = [self.var(lo, hi) for _ in range(self.n)]
        prev: pulp.LpVariable | None = None
        for t in range(self.n):
            dt = self.dt[t]
            terms: Terms = [(e[t], 1.0), (ch[t], -a.charge_efficiency * dt), (dis[t], dt / a.discharge_efficiency)]
            kept = 1.0 - a.standing_loss_per_h * dt
            if prev is None:
                self.con(terms, pulp.LpConstraintEQ, a.initial_energy_kwh * kept)
            else:
                self.con([*terms, (prev, -kept)], pulp.LpConstraintEQ, 0.0)
            prev = e[t]
            self.balance[t].extend([(ch[t], 1.0), (dis[t], -1.0)])
            if exclusive[t] and a.max_charge_kw > 0 and a.max_discharge_kw > 0:
                u = self.var(binary=True)
                self.con([(ch[t], 1.0), (u, -a.max_charge_kw)], pulp.LpConstraintLE, 0.0)
                self.con([(dis[t], 1.0), (u, a.max_discharge_kw)], pulp.LpConstraintLE, a.max_discharge_kw)
                self.switches.directions.append((u, ch[t], dis[t]))
            if a.cycling_cost_eur_per_kwh > 0:
                self.term("battery_cycling", dis[t], dt, a.cycling_cost_eur_per_kwh * dt)
        if a.terminal_energy_kwh is not None and self.n:
            short = self.var()
            self.con([(e[-1], 1.0), (short, 1.0)], pulp.LpConstraintGE, a.terminal_energy_kwh)
            self.term("terminal_soc_shortfall", short, 1.0, self.pol.terminal_soc_eur_per_kwh)
            self.slacks.append(
                Slack(a.id, "terminal_energy_shortfall", "kWh", self.t0[-2], self.t0[-1], short, 1.0)
            )
        self.column(f"{a.id}.power_kw", [[(c, 1.0), (d, -1.0)] for c, d in zip(ch, dis, strict=True)])
        self.column(f"{a.id}.energy_kwh", [[(v, 1.0)] for v in e])
        self.column(f"{a.id}.charge_kw", [[(v, 1.0)] for v in ch])
        self.column(f"{a.id}.discharge_kw", [[(v, 1.0)] for v in dis])

    def ev_charger(self, a: EVCharger) -> list[Terms]:
        """Returns, per step, the charger's average power terms (for a pool limit)."""
        setpoint: list[Terms] = [[] for _ in range(self.n)]
        average: list[Terms] = [[] for _ in range(self.n)]
        for k, sess in enumerate(a.sessions):
            pmax = a.max_power_kw if sess.max_power_kw is None else min(a.max_power_kw, sess.max_power_kw)
            hours = self.overlap_h(sess.arrival, sess.departure)
            delivered: Terms = []
            rec = SessionVars(a.id, [], [], [], [], a.min_power_kw, pmax, sess.energy_needed_kwh, a.efficiency)
            for t in range(self.n):
                if hours[t] <= 0:
                    continue
                p = self.var(0.0, pmax)
                if a.min_power_kw > 0:
                    on = self.var(binary=True)
                    self.con([(p, 1.0), (on, -pmax)], pulp.LpConstraintLE, 0.0)
                    self.con([(p, 1.0), (on, -a.min_power_kw)], pulp.LpConstraintGE, 0.0)
                    rec.on.append(on)
                frac = hours[t] / self.dt[t]
                self.balance[t].append((p, frac))
                setpoint[t].append((p, 1.0))
                average[t].append((p, frac))
                delivered.append((p, a.efficiency * hours[t]))
                rec.steps.append(t)
                rec.power.append(p)
                rec.hours.append(hours[t])
            if rec.on:
                self.switches.sessions.append(rec)
            unmet = self.var()
            self.con([*delivered, (unmet, 1.0)], pulp.LpConstraintEQ, sess.energy_needed_kwh)
            self.term("ev_unmet", unmet, 1.0, self.pol.ev_unmet_eur_per_kwh)
            name = a.id if sess.id is None else f"{a.id}/{sess.id}"
            self.slacks.append(Slack(name, "ev_energy_unmet", "kWh", sess.arrival, sess.departure, unmet, 1.0))
            self.column(f"{a.id}.session{k}.unmet_kwh", [[(unmet, 1.0)] for _ in range(self.n)])
        self.column(f"{a.id}.power_kw", setpoint)
        self.column(f"{a.id}.average_kw", average)
        return average

    def ev_pool(self, a: EVPool, chargers: dict[str, list[Terms]]) -> None:
        per_step: list[Terms] = [[] for _ in range(self.n)]
        for cid in a.charger_ids:
            for t, terms in enumerate(chargers[cid]):
                per_step[t].extend(terms)
        for t in range(self.n):
            if per_step[t]:
                self.con(per_step[t], pulp.LpConstraintLE, a.max_power_kw)
        self.switches.pools.append((a.max_power_kw, list(a.charger_ids)))
        self.column(f"{a.id}.power_kw", per_step)

    def thermal_zone(self, a: ThermalZone) -> None:
        out_c = self.p.series(a.outdoor_temperature_c)
        gains = [s + i for s, i in zip(self.p.series(a.solar_gain_kw), self.p.series(a.internal_gain_kw), strict=True)]
        cop = (
            self.p.series(a.cop)
            if a.cop is not None
            else carnot_cop(out_c, a.supply_temperature_c, a.carnot_fraction, a.approach_k)
        )
        occupied = self.p.flags(a.occupied)
        n_states = 1 if a.model == "1R1C" else 2
        init = [a.initial_temperature_c]
        if n_states == 2:
            mass = a.initial_mass_temperature_c
            init.append(a.initial_temperature_c if mass is None else mass)
        cache: dict[float, tuple] = {}
        power = [self.var(0.0, a.heat_pump_max_power_kw) for _ in range(self.n)]
        prev: list[pulp.LpVariable] | None = None
        air: list[pulp.LpVariable] = []
        mass: list[pulp.LpVariable] = []
        for t in range(self.n):
            dt = self.dt[t]
            if dt not in cache:
                cache[dt] = discretise(a, dt)
            ad, bd = cache[dt]
            states = [self.var(None, None) for _ in range(n_states)]
            for i in range(n_states):
                # x_i[t+1] = Σ_j Ad_ij x_j[t] + Bd_i0 T_out + Bd_i1 (COP·P + gains)
                rhs = float(bd[i, 0] * out_c[t] + bd[i, 1] * gains[t])
                terms: Terms = [(states[i], 1.0)]
                if bd[i, 1] != 0:
                    terms.append((power[t], -float(bd[i, 1] * cop[t])))
                if prev is None:
                    rhs += float(sum(ad[i, j] * init[j] for j in range(n_states)))
                else:
                    terms.extend((prev[j], -float(ad[i, j])) for j in range(n_states) if ad[i, j] != 0)
                self.con(terms, pulp.LpConstraintEQ, rhs)
            prev = states
            air.append(states[0])
            mass.append(states[-1])
            low, high = a.comfort_occupied_c if occupied[t] else a.comfort_unoccupied_c
            cold, hot = self.var(), self.var()
            self.con([(states[0], 1.0), (cold, 1.0)], pulp.LpConstraintGE, low)
            self.con([(states[0], 1.0), (hot, -1.0)], pulp.LpConstraintLE, high)
            for v, kind in ((cold, "too_cold"), (hot, "too_warm")):
                self.term("discomfort", v, dt, self.pol.discomfort_eur_per_k_h * dt)
                self.slack(a.id, kind, "K·h", t, v, dt)
            self.balance[t].append((power[t], 1.0))
        self.column(f"{a.id}.power_kw", [[(v, 1.0)] for v in power])
        self.column(f"{a.id}.heat_kw", [[(v, c)] for v, c in zip(power, cop, strict=True)])
        self.column(f"{a.id}.temperature_c", [[(v, 1.0)] for v in air])
        if n_states == 2:
            self.column(f"{a.id}.mass_temperature_c", [[(v, 1.0)] for v in mass])

    def deferrable(self, a: DeferrableLoad) -> None:
        prof = a.power_profile_kw
        length = len(prof)
        starts = [
            k
            for k in range(self.n - length + 1)
            if self.t0[k] >= a.earliest_start and self.t0[k + length] <= a.finish_by
        ]
        power: list[Terms] = [[] for _ in range(self.n)]
        run: Terms = []
        for k in starts:
            s = self.var(binary=True)
            run.append((s, 1.0))
            for i, kw in enumerate(prof):
                if kw != 0:
                    power[k + i].append((s, kw))
        not_run = self.var(0.0, 1.0)
        if not starts:
            self.notes.append(f"{a.id}: no start fits between earliest_start and finish_by in the horizon")
            not_run.lowBound = 1.0
        self.con([*run, (not_run, 1.0)], pulp.LpConstraintEQ, 1.0)
        self.term("deferrable_not_run", not_run, 1.0, self.pol.deferrable_not_run_eur)
        self.slacks.append(Slack(a.id, "not_run", "runs", a.earliest_start, a.finish_by, not_run, 1.0))
        for t in range(self.n):
            self.balance[t].extend(power[t])
        self.switches.deferrable_starts.append([s for s, _ in run])
        self.column(f"{a.id}.power_kw", power)
        self.column(f"{a.id}.started", _start_columns(run, starts, self.n))

    def lighting_zone(self, a: LightingZone) -> None:
        occupied = self.p.flags(a.occupied)
        daylight = self.p.series(a.daylight_lux)
        dim = [self.var(0.0, 100.0) for _ in range(self.n)]
        for t in range(self.n):
            need = a.required_illuminance_lux if occupied[t] else 0.0
            if self.dr_steps[t]:
                need *= 1.0 - a.dr_dimming_allowance_pct / 100.0
            if need > daylight[t]:
                under = self.var()
                per_pct = a.max_illuminance_lux / 100.0
                self.con([(dim[t], per_pct), (under, 1.0)], pulp.LpConstraintGE, need - daylight[t])
                eur = self.pol.under_illumination_eur_per_lux_h * self.dt[t]
                self.term("under_illumination", under, self.dt[t], eur)
                self.slack(a.id, "under_illumination", "lx·h", t, under, self.dt[t])
            self.balance[t].append((dim[t], a.installed_power_kw / 100.0))
        self.column(f"{a.id}.dimming_pct", [[(v, 1.0)] for v in dim])
        self.column(f"{a.id}.power_kw", [[(v, a.installed_power_kw / 100.0)] for v in dim])
        self.column(
            f"{a.id}.illuminance_lux", [[(v, a.max_illuminance_lux / 100.0)] for v in dim], list(daylight)
        )

    def public_lighting(self, a: PublicLightingCircuit) -> None:
        classes = [a.lighting_class] * self.n if isinstance(a.lighting_class, str) else a.lighting_class
        dark, curfew = self.p.flags(a.dark), self.p.flags(a.curfew)
        design = LIGHTING_CLASS_LEVELS[a.design_class]
        dim: list[pulp.LpVariable] = []
        for t in range(self.n):
            cap = a.curfew_level_pct if curfew[t] else 100.0
            if not dark[t] or classes[t] == "off":
                need = 0.0
            else:
                need = max(min(100.0, 100.0 * LIGHTING_CLASS_LEVELS[classes[t]] / design), a.min_safety_pct)
            # The curfew caps the level; what it cuts below the class's level is the commune's choice.
            need = min(need, cap)
            d = self.var(0.0, cap)
            dim.append(d)
            if need > 0:
                short = self.var()
                self.con([(d, 1.0), (short, 1.0)], pulp.LpConstraintGE, need)
                self.term(
                    "public_lighting_shortfall", short, self.dt[t], self.pol.public_lighting_eur_per_pct_h * self.dt[t]
                )
                self.slack(a.id, "under_lighting", "%·h", t, short, self.dt[t])
            self.balance[t].append((d, a.installed_power_kw / 100.0))
        self.column(f"{a.id}.dimming_pct", [[(v, 1.0)] for v in dim])
        self.column(f"{a.id}.power_kw", [[(v, a.installed_power_kw / 100.0)] for v in dim])

    def hot_water_tank(self, a: HotWaterTank) -> None:
        steps = tank_steps(a, self.p)
        cap = steps.capacity_kwh_per_k
        allowed = self.p.flags(a.heating_allowed)
        cop = self.p.series(a.cop)
        low = self.p.series(a.min_temperature_c)
        e0 = steps.energy_kwh(a, a.initial_temperature_c)
        # Heating only adds heat, so the tank never holds less than without it, and a tank found above its
        # maximum (or pushed there by a warm room) may cool back on its own.
        free = steps.simulate(e0, [0.0] * self.n)
        top = steps.energy_kwh(a, a.max_temperature_c)
        ceiling = [max(top, f) for f in free]
        power: list[Terms] = []
        on: dict[int, pulp.LpVariable] = {}
        for t in range(self.n):
            pmax = a.heater_max_power_kw if allowed[t] else 0.0
            if pmax <= 0:
                power.append([])
            elif a.on_off:
                on[t] = self.var(binary=True)
                power.append([(on[t], pmax)])
            else:
                power.append([(self.var(0.0, pmax), 1.0)])
        energy: list[pulp.LpVariable] = []
        for t in range(self.n):
            dt = self.dt[t]
            e = self.var(None, ceiling[t])
            terms: Terms = [(e, 1.0), *((v, -c * steps.heat_kwh_per_kw[t]) for v, c in power[t])]
            if energy:
                self.con([*terms, (energy[-1], -steps.decay[t])], pulp.LpConstraintEQ, steps.drift_kwh[t])
            else:
                self.con(terms, pulp.LpConstraintEQ, steps.decay[t] * e0 + steps.drift_kwh[t])
            energy.append(e)
            need = steps.energy_kwh(a, low[t])
            if low[t] > a.cold_water_temperature_c and need > free[t]:
                short = self.var()  # K below the minimum at the end of the step
                self.con([(e, 1.0), (short, cap)], pulp.LpConstraintGE, need)
                self.term("hot_water_shortfall", short, dt, self.pol.hot_water_shortfall_eur_per_k_h * dt)
                self.slack(a.id, "too_cold", "K·h", t, short, dt)
            self.balance[t].extend(power[t])
        chosen = self._legionella(a, energy, free, cap)
        if on or chosen:
            target = cap * (a.legionella_temperature_c - a.cold_water_temperature_c)
            self.switches.tanks.append(
                TankSwitches(on, chosen, target, energy, steps, a.heater_max_power_kw, e0, ceiling)
            )
        self.column(f"{a.id}.power_kw", power)
        self.column(f"{a.id}.heat_kw", [[(v, c * cop[t]) for v, c in power[t]] for t in range(self.n)])
        self.column(f"{a.id}.temperature_c", [[(e, 1.0 / cap)] for e in energy], [a.cold_water_temperature_c] * self.n)
        self.column(f"{a.id}.energy_kwh", [[(e, 1.0)] for e in energy])

    def _legionella(
        self, a: HotWaterTank, energy: list[pulp.LpVariable], free: list[float], cap: float
    ) -> dict[int, pulp.LpVariable]:
        """Reach the disinfection temperature at the end of at least one step ending by the due time.
        Returns the binary of each candidate step (none when there is a single candidate)."""
        due = a.legionella_due_by
        chosen: dict[int, pulp.LpVariable] = {}
        if due is None or due > self.t0[-1] or not self.n:
            return chosen  # not due within this horizon
        due = max(due, self.t0[1])  # overdue: as soon as possible
        target = a.legionella_temperature_c - a.cold_water_temperature_c
        short = self.var()  # K short at the best step
        candidates = [t for t in range(self.n) if self.t0[t + 1] <= due]
        if len(candidates) == 1:
            self.con([(energy[candidates[0]], 1.0), (short, cap)], pulp.LpConstraintGE, cap * target)
        else:
            for t in candidates:
                z = chosen[t] = self.var(binary=True)
                # Off the chosen step the constraint relaxes to E ≥ the free response, which always holds.
                big = max(cap * target - free[t], 0.0)
                self.con([(energy[t], 1.0), (short, cap), (z, -big)], pulp.LpConstraintGE, cap * target - big)
            self.con([(z, 1.0) for z in chosen.values()], pulp.LpConstraintEQ, 1.0)
        self.term("legionella_shortfall", short, 1.0, self.pol.legionella_eur_per_k)
        self.slacks.append(Slack(a.id, "legionella_not_reached", "K", self.t0[0], due, short, 1.0))
        return chosen

    # -- site ----------------------------------------------------------------------------------------

    def site(self) -> None:
        site, pol = self.p.site, self.pol
        carbon = self.p.series(site.carbon_kg_per_kwh)
        subscribed = None if site.subscribed_power_kw is None else self.p.series(site.subscribed_power_kw)
        imp = [self.var() for _ in range(self.n)]
        exp = [self.var() for _ in range(self.n)]
        peak = self.var() if pol.peak_eur_per_kw > 0 else None
        flex_up, flex_down = self.flex_up_kw, self.flex_down_kw
        if peak is not None:
            self.term("peak", peak, 1.0, pol.peak_eur_per_kw)
        for t in range(self.n):
            dt = self.dt[t]
            self.con(
                [(imp[t], 1.0), (exp[t], -1.0), *((v, -c) for v, c in self.balance[t])],
                pulp.LpConstraintEQ,
                self.fixed_load[t],
            )
            self.term("energy_cost", imp[t], self.import_price[t] * dt, pol.cost_weight * self.import_price[t] * dt)
            self.term("energy_cost", exp[t], -self.export_price[t] * dt, -pol.cost_weight * self.export_price[t] * dt)
            self.term("carbon", imp[t], carbon[t] * dt, pol.carbon_eur_per_kg * carbon[t] * dt)
            if site.import_limit_kw is not None:
                self._hard_limit(imp[t], site.import_limit_kw, "import_limit", t)
            if site.export_limit_kw is not None:
                self._hard_limit(exp[t], site.export_limit_kw, "export_limit", t)
            if _clean(self.export_price[t]) >= _clean(self.import_price[t]):
                # Importing and exporting at once would pay (or tie) here: forbid it explicitly.
                u = self.var(binary=True)
                # Bounds on what the site could physically draw or inject at this step.
                big = max(self.fixed_load[t], 0.0) + flex_up + 1.0
                big_e = max(-self.fixed_load[t], 0.0) + flex_down + 1.0
                self.con([(imp[t], 1.0), (u, -big)], pulp.LpConstraintLE, 0.0)
                self.con([(exp[t], 1.0), (u, big_e)], pulp.LpConstraintLE, big_e)
                self.switches.directions.append((u, imp[t], exp[t]))
            if peak is not None:
                self.con([(peak, 1.0), (imp[t], -1.0)], pulp.LpConstraintGE, 0.0)
            if subscribed is not None:
                over = self.var()
                self.con([(over, 1.0), (imp[t], -1.0)], pulp.LpConstraintGE, -subscribed[t])
                self.term("power_overshoot", over, dt, pol.overshoot_eur_per_kw_h * dt)
                self.slack("site", "subscribed_power_overshoot", "kW·h", t, over, dt)
        for ev in self.p.dr_events:
            for t, h in enumerate(self.overlap_h(ev.start, ev.end)):
                if h <= 0:
                    continue
                excess = self.var()
                self.con([(imp[t], 1.0), (excess, -1.0)], pulp.LpConstraintLE, ev.max_import_kw)
                self.term("dr_noncompliance", excess, h, ev.value_eur_per_kwh * h)
                self.slacks.append(
                    Slack(ev.id, "dr_noncompliance", "kWh", max(ev.start, self.t0[t]),
                          min(ev.end, self.t0[t + 1]), excess, h)
                )
        self.site_flows = list(zip(imp, exp, strict=True))
        self.column("site.import_kw", [[(v, 1.0)] for v in imp])
        self.column("site.export_kw", [[(v, 1.0)] for v in exp])
        self.column("site.net_kw", [[(i, 1.0), (e, -1.0)] for i, e in zip(imp, exp, strict=True)])
        self.column("site.load_kw", const=self.p.series(site.load_kw))

    def _hard_limit(self, flow: pulp.LpVariable, limit: float, kind: str, t: int) -> None:
        relief = self.var()
        self.con([(flow, 1.0), (relief, -1.0)], pulp.LpConstraintLE, limit)
        self.term("hard_limit_relief", relief, self.dt[t], self.pol.hard_limit_eur_per_kwh * self.dt[t])

    # -- assembly ------------------------------------------------------------------------------------

    @property
    def flex_up_kw(self) -> float:
        """Most the assets could add to the site's consumption at once."""
        total = 0.0
        for a in self.p.assets:
            if isinstance(a, Battery):
                total += a.max_charge_kw
            elif isinstance(a, EVCharger):
                total += a.max_power_kw
            elif isinstance(a, ThermalZone):
                total += a.heat_pump_max_power_kw
            elif isinstance(a, DeferrableLoad):
                total += max(a.power_profile_kw)
            elif isinstance(a, LightingZone | PublicLightingCircuit):
                total += a.installed_power_kw
            elif isinstance(a, HotWaterTank):
                total += a.heater_max_power_kw
        return total

    @property
    def flex_down_kw(self) -> float:
        """Most the assets could inject at once (battery discharge and curtailable PV)."""
        total = 0.0
        for a in self.p.assets:
            if isinstance(a, Battery):
                total += a.max_discharge_kw
            elif isinstance(a, PV) and a.curtailable:
                total += max(self.p.series(a.forecast_kw), default=0.0)
        return total

    def exclusivity_steps(self) -> list[bool]:
        if self.s.battery_exclusivity == "always":
            return [True] * self.n
        fixed_pv = any(isinstance(a, PV) and not a.curtailable for a in self.p.assets)
        cheap_cycling = any(
            isinstance(a, Battery) and a.cycling_cost_eur_per_kwh <= 0 for a in self.p.assets
        )
        return [
            fixed_pv or cheap_cycling or self.import_price[t] <= 0 or self.export_price[t] < 0
            for t in range(self.n)
        ]

    def build(self) -> Model:
        exclusive = self.exclusivity_steps()
        chargers: dict[str, list[Terms]] = {}
        for a in self.p.assets:
            if isinstance(a, PV):
                self.pv(a)
            elif isinstance(a, Battery):
                self.battery(a, exclusive)
            elif isinstance(a, EVCharger):
                chargers[a.id] = self.ev_charger(a)
            elif isinstance(a, ThermalZone):
                self.thermal_zone(a)
            elif isinstance(a, DeferrableLoad):
                self.deferrable(a)
            elif isinstance(a, LightingZone):
                self.lighting_zone(a)
            elif isinstance(a, PublicLightingCircuit):
                self.public_lighting(a)
            elif isinstance(a, HotWaterTank):
                self.hot_water_tank(a)
        for a in self.p.assets:
            if isinstance(a, EVPool):
                self.ev_pool(a, chargers)
        self.site()
        objective: dict[pulp.LpVariable, float] = defaultdict(float)
        for entries in self.terms.values():
            for v, _, eur in entries:
                objective[v] += eur
        self.prob.setObjective(pulp.LpAffineExpression({v: c for v, c in objective.items() if abs(c) >= _TINY}))
        return Model(
            self.prob, self.p, dict(self.terms), self.slacks, self.columns,
            self.n_binaries, self.notes, self.switches, self.binaries, self.site_flows,
        )


def _start_columns(run: Terms, starts: list[int], n: int) -> list[Terms]:
    out: list[Terms] = [[] for _ in range(n)]
    for (s, _), k in zip(run, starts, strict=True):
        out[k].append((s, 1.0))
    return out


def build(problem: Problem, settings: Settings) -> Model:
    return _Builder(problem, settings).build()
