"""Solve a Problem: build, run HiGHS (CBC as fallback), read the schedule back and check hard limits."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pulp

from optimizer.banner import silence_highs_banner
from optimizer.checks import hard_limit_violations
from optimizer.decompose import solve_decomposed
from optimizer.highs import Highs, WarmStart
from optimizer.memory import release_freed_memory
from optimizer.model import TERM_UNITS, Model, build
from optimizer.problem import PV, EVPool, Problem, Settings
from optimizer.rounding import solve_by_rounding
from optimizer.schedule import ObjectiveTerm, Schedule, Violation

# Slack values below this are solver noise, not violations.
_EPS = 1e-6


def _highs(settings: Settings, warm_start: WarmStart | None = None) -> Highs:
    silence_highs_banner()
    return Highs(
        msg=settings.msg, timeLimit=settings.time_limit_s, gapRel=settings.mip_gap, threads=settings.threads,
        warm_start=warm_start,
    )


def _cbc(settings: Settings) -> pulp.LpSolver:
    with warnings.catch_warnings():
        # PuLP 3.x warns that its bundled CBC goes away in 4.0; the pin in pyproject keeps us on 3.x.
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(
            msg=settings.msg, timeLimit=settings.time_limit_s, gapRel=settings.mip_gap, threads=settings.threads
        )


def _highs_status(prob: pulp.LpProblem) -> tuple[str, float | None]:
    import highspy

    h = prob.solverModel
    status = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    gap = float(info.mip_gap) if info.mip_node_count >= 0 else 0.0
    gap = max(gap, 0.0)
    s = highspy.HighsModelStatus
    if status == s.kOptimal:
        # HiGHS calls a MIP optimal once it is within the requested gap; the gap is reported beside it.
        return "optimal", (gap if info.mip_node_count >= 0 else 0.0)
    if status in (s.kTimeLimit, s.kIterationLimit, s.kInterrupt, s.kSolutionLimit):
        return ("time_limit" if has_solution else "no_solution"), (gap if has_solution else None)
    if status in (s.kInfeasible, s.kUnboundedOrInfeasible):
        return "infeasible", None
    if status == s.kUnbounded:
        return "unbounded", None
    return f"error:{h.modelStatusToString(status)}", None


def _run(model: Model, settings: Settings, warm_start: WarmStart | None = None) -> tuple[str, str, float | None]:
    """Returns (solver name, status, gap). The fallback solver gets what is left of the time limit."""
    order = ["highs", "cbc"] if settings.solver == "highs" else ["cbc", "highs"]
    if not settings.fallback:
        order = order[:1]
    status, gap, ran = "not_solved", None, order[0]
    deadline = time.perf_counter() + settings.time_limit_s
    for k, name in enumerate(order):
        left = deadline - time.perf_counter()
        if k and left < 0.05:
            model.notes.append(f"no time left to try solver {name}")
            break
        ran = name
        step = settings if not k else settings.model_copy(update={"time_limit_s": left})
        solver = _highs(step, warm_start) if name == "highs" else _cbc(step)
        if not solver.available():
            model.notes.append(f"solver {name} not available")
            continue
        try:
            model.prob.solve(solver)
        except pulp.PulpSolverError as exc:
            model.notes.append(f"solver {name} failed: {exc}")
            continue
        if name == "highs":
            status, gap = _highs_status(model.prob)
            assert isinstance(solver, Highs)
            model.n_variables = len(solver.columns)
            if status == "optimal":
                model.warm_start = solver.warm_start_after(model.prob)
        else:
            status = _pulp_status(model.prob)
            gap = None
        if status in ("optimal", "time_limit"):
            return name, status, gap
        model.notes.append(f"solver {name} returned {status}")
    return ran, status, gap


def _pulp_status(prob: pulp.LpProblem) -> str:
    if prob.sol_status == pulp.LpSolutionOptimal:
        return "optimal"
    if prob.sol_status == pulp.LpSolutionIntegerFeasible:
        return "time_limit"
    if prob.status == pulp.LpStatusInfeasible:
        return "infeasible"
    return "no_solution"


def _value(v: pulp.LpVariable) -> float:
    x = v.varValue
    return 0.0 if x is None else float(x)


def _net_site_flows(model: Model) -> None:
    """A meter cannot import and export at once. A solution within the MIP gap may still do both when it
    costs next to nothing; netting the two never raises the cost nor breaks a limit."""
    for imp, exp in model.site_flows:
        both = min(_value(imp), _value(exp))
        if both > 0:
            imp.varValue = _value(imp) - both
            exp.varValue = _value(exp) - both


def _setpoints(model: Model) -> pd.DataFrame:
    idx = pd.DatetimeIndex(model.problem.step_starts()[:-1], name="time")
    n = len(idx)
    # Every column's terms in one pass, summed per (column, step) in the terms' order, then the constants.
    cells: list[int] = []
    products: list[float] = []
    for j, col in enumerate(model.columns.values()):
        base = j * n
        for t, terms in enumerate(col.terms):
            for v, k in terms:
                cells.append(base + t)
                x = v.varValue
                products.append(k * (0.0 if x is None else float(x)))
    sums = np.bincount(np.asarray(cells, dtype=np.intp), weights=np.asarray(products, dtype=float),
                       minlength=n * len(model.columns))
    const = np.array([col.const for col in model.columns.values()], dtype=float).reshape(-1)
    values = (const + sums).reshape(len(model.columns), n)
    return pd.DataFrame(values.T, index=idx, columns=list(model.columns))


def _objective(model: Model) -> dict[str, ObjectiveTerm]:
    out: dict[str, ObjectiveTerm] = {}
    for name, unit in TERM_UNITS.items():
        entries = model.terms.get(name, [])
        value = sum(a * _value(v) for v, a, _ in entries)
        eur = sum(e * _value(v) for v, _, e in entries)
        if entries or name in ("energy_cost", "carbon", "peak"):
            out[name] = ObjectiveTerm(name, value, unit, eur)
    return out


def _soft_violations(model: Model) -> list[Violation]:
    """Slacks above noise, with consecutive steps of one (asset, kind) merged into one interval."""
    out: list[Violation] = []
    for s in model.slacks:
        amount = _value(s.var) * s.amount_per_unit
        if amount <= _EPS:
            continue
        last = out[-1] if out else None
        if last and last.asset_id == s.asset_id and last.kind == s.kind and last.end == s.start:
            out[-1] = Violation(s.asset_id, s.kind, last.start, s.end, last.amount + amount, s.unit)
        else:
            out.append(Violation(s.asset_id, s.kind, s.start, s.end, amount, s.unit))
    return out


def solve(problem: Problem, settings: Settings | None = None, warm_start: WarmStart | None = None) -> Schedule:
    """Schedule the problem's assets. Never raises for an over-constrained problem: violations say why.

    `warm_start`: the `warm_start` of the schedule of a previous horizon with the same assets (a receding
    horizon); HiGHS starts the LP from its basis. It changes how long the solve takes, not its optimum."""
    try:
        return _solve(problem, settings or Settings(), warm_start)
    finally:
        # The model and the solver's copy of it are freed by now; without this a long-running service
        # keeps their pages and grows with every larger solve (see optimizer.memory).
        release_freed_memory()


def _solve(problem: Problem, settings: Settings, warm_start: WarmStart | None) -> Schedule:
    n_assets = sum(1 for a in problem.assets if not isinstance(a, PV | EVPool))
    if settings.decompose == "always" or (
        settings.decompose == "auto" and n_assets > settings.decompose_above_assets
    ):
        return solve_decomposed(problem, settings, solve)
    t0 = time.perf_counter()
    model = build(problem, settings)
    t1 = time.perf_counter()
    solver, status, gap = "", "not_solved", None
    rounding = settings.strategy == "rounding" or (
        settings.strategy == "auto" and model.n_binaries > settings.rounding_above_binaries
    )
    if rounding and settings.solver == "highs" and model.n_binaries and pulp.HiGHS().available():
        solver = "highs+rounding"
        status, gap = solve_by_rounding(model, settings)
    if status not in ("optimal", "time_limit"):
        limit = settings.time_limit_s
        if solver:  # the rounding start failed: the MIP gets what is left, and at least a second
            limit = max(min(1.0, limit), limit - (time.perf_counter() - t1))
        solver, status, gap = _run(model, settings.model_copy(update={"time_limit_s": limit}), warm_start)
    t2 = time.perf_counter()
    has_solution = status in ("optimal", "time_limit")
    if has_solution:
        _net_site_flows(model)
        setpoints = _setpoints(model)
        objective = _objective(model)
        violations = _soft_violations(model) + hard_limit_violations(problem, setpoints, settings)
    else:
        setpoints = pd.DataFrame(index=pd.DatetimeIndex(problem.step_starts()[:-1], name="time"))
        objective, violations = {}, []
    prob = model.prob
    return Schedule(
        setpoints=setpoints,
        objective=objective,
        violations=violations,
        status=status,
        solver=solver,
        mip_gap=gap,
        build_s=t1 - t0,
        solve_s=t2 - t1,
        n_variables=len(prob.variables()) if model.n_variables is None else model.n_variables,
        n_binaries=model.n_binaries,
        n_constraints=len(prob.constraints()),
        notes=model.notes,
        warm_start=model.warm_start,
    )
