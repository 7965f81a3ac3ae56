"""LP-rounding start for large models: relax, round the switches with their physics, re-solve, polish.

Large districts have tens of thousands of on/off switches (EV 6 A minimum, appliance starts). Their LP
relaxation is tight, but branch-and-bound spends its time looking for a first good integer point. So:

1. solve the LP relaxation (its optimum is a lower bound on the true optimum);
2. round every switch from the LP values, respecting each session's energy and each pool's limit;
3. re-solve the LP with the switches fixed (warm-started on the same HiGHS model): a feasible schedule,
   with a certified gap against the bound of step 1;
4. if that gap is above the requested one and time remains, run the MIP from that schedule.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
import pulp

from optimizer.banner import silence_highs_banner
from optimizer.highs import Highs
from optimizer.model import Model, SessionVars, TankSwitches
from optimizer.problem import Settings

if TYPE_CHECKING:
    import highspy


def _val(v: pulp.LpVariable) -> float:
    return 0.0 if v.varValue is None else float(v.varValue)


def _round_session(s: SessionVars) -> dict[int, int]:
    """On/off per position in the session: the LP's strongest steps, enough to deliver the energy."""
    p = [_val(v) for v in s.power]
    order = sorted(range(len(p)), key=lambda i: -p[i])
    chosen = [i for i in order if p[i] >= 0.5 * s.min_kw and p[i] > 1e-6]
    rest = [i for i in order if i not in set(chosen) and p[i] > 1e-6]

    def capacity(idx: list[int]) -> float:
        return sum(s.max_kw * s.hours[i] * s.efficiency for i in idx)

    while rest and capacity(chosen) < s.need_kwh - 1e-6:
        chosen.append(rest.pop(0))
    # The minimum power of every chosen step must not already exceed the energy asked for.
    while chosen and sum(s.min_kw * s.hours[i] * s.efficiency for i in chosen) > s.need_kwh + 1e-9:
        chosen.pop()
    on = set(chosen)
    return {i: int(i in on) for i in range(len(p))}


def _tank_budget_kw(model: Model) -> list[float] | None:
    """Per step, the power the contactor tanks may draw together under the site's import limit: what the
    LP gave them plus the LP's headroom under the limit (all closing at once is the 22:00 peak)."""
    limit = model.problem.site.import_limit_kw
    if limit is None or not model.switches.tanks:
        return None
    budget = [max(0.0, limit - _val(imp)) for imp, _ in model.site_flows]
    for tank in model.switches.tanks:
        for t, on in tank.on.items():
            budget[t] += tank.power_kw * _val(on)
    return budget


def _round_tanks(tanks: list[TankSwitches], budget: list[float] | None) -> dict[pulp.LpVariable, float]:
    """Step by step, switch a contactor on wherever its tank would otherwise hold less heat than in the LP,
    within the tank's maximum and, most behind first, within the site's budget. Then heat more before a
    legionella due time the LP's heating does not reach; the step chosen for it is the hottest candidate."""
    n = len(tanks[0].ceiling_kwh) if tanks else 0
    states = [[0.0] * n for _ in tanks]
    energies = [k.initial_kwh for k in tanks]
    for t in range(n):
        behind = []
        for i, k in enumerate(tanks):
            off = k.steps.decay[t] * energies[i] + k.steps.drift_kwh[t]
            quantum = k.steps.heat_kwh_per_kw[t] * k.power_kw
            energies[i] = off
            if t in k.on and off < _val(k.energy[t]) - 1e-9 and off + quantum <= k.ceiling_kwh[t] + 1e-9:
                behind.append(((_val(k.energy[t]) - off) / quantum, i, quantum))
        for _, i, quantum in sorted(behind, reverse=True):
            if budget is None or budget[t] >= tanks[i].power_kw - 1e-9:
                states[i][t] = 1.0
                energies[i] += quantum
                if budget is not None:
                    budget[t] -= tanks[i].power_kw
    fixed: dict[pulp.LpVariable, float] = {}
    for k, state in zip(tanks, states, strict=True):
        fixed.update(_finish_tank(k, state, budget))
    return fixed


def _finish_tank(tank: TankSwitches, state: list[float], budget: list[float] | None) -> dict[pulp.LpVariable, float]:
    n = len(state)

    def simulate() -> list[float]:
        return tank.steps.simulate(tank.initial_kwh, [s * tank.power_kw for s in state])

    energy = simulate() if tank.on else [_val(e) for e in tank.energy]
    while tank.on and tank.legionella and max(energy[t] for t in tank.legionella) < tank.legionella_kwh - 1e-9:
        best = max(tank.legionella, key=lambda t: energy[t])
        idle = [t for t in tank.on if t <= best and not state[t]
                and (budget is None or budget[t] >= tank.power_kw - 1e-9)]
        if not idle:
            break
        state[idle[-1]] = 1.0
        if budget is not None:
            budget[idle[-1]] -= tank.power_kw
        energy = simulate()
    # Heating added before a due time may pass the maximum later on: switch off the latest step before.
    while tank.on:
        over = next((t for t in range(n) if energy[t] > tank.ceiling_kwh[t] + 1e-9), None)
        heated = [t for t in range(over + 1) if state[t]] if over is not None else []
        if not heated:
            break
        state[heated[-1]] = 0.0
        if budget is not None:
            budget[heated[-1]] += tank.power_kw
        energy = simulate()
    fixed = {on: state[t] for t, on in tank.on.items()}
    if tank.legionella:
        hottest = max(tank.legionella, key=lambda t: energy[t])
        fixed.update({z: float(t == hottest) for t, z in tank.legionella.items()})
    return fixed


def round_switches(model: Model) -> dict[pulp.LpVariable, float]:
    sw = model.switches
    fixed: dict[pulp.LpVariable, float] = {}
    # (charger, step) -> list of (on var, min kW, LP power) for the pool check.
    by_step: dict[tuple[str, int], list[tuple[pulp.LpVariable, float, float]]] = defaultdict(list)
    for s in sw.sessions:
        for i, state in _round_session(s).items():
            fixed[s.on[i]] = float(state)
            if state:
                by_step[(s.charger_id, s.steps[i])].append((s.on[i], s.min_kw, _val(s.power[i])))
    for limit, members in sw.pools:
        steps = {t for (cid, t) in by_step if cid in set(members)}
        for t in steps:
            active = [x for cid in members for x in by_step.get((cid, t), [])]
            active.sort(key=lambda x: x[2])
            total = sum(m for _, m, _ in active)
            # Minimum powers that no longer fit under the pool limit: switch the weakest off.
            while active and total > limit + 1e-9:
                on, m, _ = active.pop(0)
                fixed[on] = 0.0
                total -= m
    for starts in sw.deferrable_starts:
        if not starts:
            continue
        vals = [_val(v) for v in starts]
        best = int(np.argmax(vals))
        for k, v in enumerate(starts):
            fixed[v] = 1.0 if (k == best and sum(vals) >= 0.5) else 0.0
    fixed.update(_round_tanks(sw.tanks, _tank_budget_kw(model)))
    for u, when_one, when_zero in sw.directions:
        fixed[u] = 1.0 if _val(when_one) >= _val(when_zero) else 0.0
    for v in model.binaries:
        if v not in fixed:
            fixed[v] = float(round(_val(v)))
    return fixed


def _read_back(columns: list[pulp.LpVariable], h: highspy.Highs) -> None:
    for v, x in zip(columns, h.getSolution().col_value, strict=True):
        v.varValue = x


def _set_limit(h: highspy.Highs, deadline: float) -> bool:
    left = deadline - time.perf_counter()
    if left <= 0.05:
        return False
    h.setOptionValue("time_limit", float(left))
    return True


def _objective(h: highspy.Highs) -> float:
    return float(h.getInfo().objective_function_value)


def solve_by_rounding(model: Model, settings: Settings) -> tuple[str, float | None]:
    """Returns (status, gap). Leaves the best schedule found in the PuLP variables."""
    # Imported here so that the optimiser still loads (and falls back to CBC) without highspy.
    import highspy

    silence_highs_banner()
    deadline = time.perf_counter() + settings.time_limit_s
    lp = Highs(mip=False, msg=settings.msg, timeLimit=settings.time_limit_s, threads=settings.threads)
    model.prob.solve(lp)
    model.n_variables = len(lp.columns)
    h = model.prob.solverModel
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return "no_solution", None
    bound = _objective(h)
    fixed = round_switches(model)
    idx = np.array([v.index for v in fixed], dtype=np.int32)
    vals = np.array(list(fixed.values()), dtype=float)
    h.changeColsBounds(len(idx), idx, vals, vals)
    if not _set_limit(h, deadline):
        return "no_solution", None
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        model.notes.append("rounded schedule not solved: " + h.modelStatusToString(h.getModelStatus()))
        return "no_solution", None
    incumbent = _objective(h)
    _read_back(lp.columns, h)
    gap = max(0.0, (incumbent - bound) / max(abs(incumbent), 1e-9))
    model.notes.append(f"LP-rounding start: bound {bound:.4f}, rounded {incumbent:.4f}")
    if gap <= settings.mip_gap or not _set_limit(h, deadline):
        return ("optimal" if gap <= settings.mip_gap else "time_limit"), gap
    # Polish: give the switches back to the MIP, starting from the rounded schedule.
    start = h.getSolution()
    zeros, ones = np.zeros(len(idx)), np.ones(len(idx))
    h.changeColsBounds(len(idx), idx, zeros, ones)
    h.changeColsIntegrality(len(idx), idx, np.array([highspy.HighsVarType.kInteger] * len(idx)))
    h.setOptionValue("mip_rel_gap", settings.mip_gap)
    h.setSolution(start)
    h.run()
    info = h.getInfo()
    if info.primal_solution_status == 2 and _objective(h) < incumbent - 1e-9:
        _read_back(lp.columns, h)
        incumbent = _objective(h)
    mip_bound = float(info.mip_dual_bound) if info.mip_node_count >= 0 else bound
    bound = max(bound, mip_bound) if np.isfinite(mip_bound) else bound
    gap = max(0.0, (incumbent - bound) / max(abs(incumbent), 1e-9))
    return ("optimal" if gap <= settings.mip_gap + 1e-12 else "time_limit"), gap
