"""Decompose a large district into sub-districts solved one by one, then recombine them.

The assets of a district only interact through the site connection (import/export limits, subscribed
power, peak, demand-response caps). Each sub-district gets a share of those site limits in proportion
to its number of assets, and the full policy weights; energy prices and carbon are separable, so they
are exact. The recombined schedule nets the sub-districts' flows at the site meter, and the site-level
terms, violations and hard limits are computed again on it. Pools stay whole with their chargers.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from optimizer.checks import hard_limit_violations
from optimizer.problem import PV, Asset, DemandResponseEvent, EVCharger, EVPool, Problem, Series, Settings, Site
from optimizer.schedule import ObjectiveTerm, Schedule, Violation

SITE_TERMS = ("energy_cost", "carbon", "peak", "power_overshoot", "dr_noncompliance", "hard_limit_relief")
SITE_KINDS = ("subscribed_power_overshoot", "dr_noncompliance")


def _scale(value: Series | None, share: float) -> Series | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [v * share for v in value]
    return value * share


def partition(problem: Problem, group_size: int) -> list[list[Asset]]:
    """Groups of non-PV assets, each with a similar mix of kinds; pools stay with their chargers."""
    pools = [a for a in problem.assets if isinstance(a, EVPool)]
    pooled = {cid for p in pools for cid in p.charger_ids}
    chargers = {a.id: a for a in problem.assets if isinstance(a, EVCharger)}
    units: list[list[Asset]] = [[p, *(chargers[c] for c in p.charger_ids)] for p in pools]
    units += [[a] for a in problem.assets if not isinstance(a, PV | EVPool) and a.id not in pooled]
    total = sum(len(u) for u in units)
    n_groups = max(1, math.ceil(total / group_size))
    units.sort(key=lambda u: (type(u[0]).__name__, -len(u)))
    groups: list[list[Asset]] = [[] for _ in range(n_groups)]
    sizes = [0] * n_groups
    for u in units:
        g = int(np.argmin(sizes))
        groups[g].extend(u)
        sizes[g] += len(u)
    return [g for g in groups if g]


def pro_rata(problem: Problem, groups: list[list[Asset]]) -> list[Problem]:
    """One sub-problem per group with a share of the site's load, PV and limits by number of assets."""
    pvs = [a for a in problem.assets if isinstance(a, PV)]
    total = sum(len(g) for g in groups)
    out = []
    site = problem.site
    for members in groups:
        share = len(members) / total
        sub_site = Site(
            import_limit_kw=_scale(site.import_limit_kw, share),
            export_limit_kw=_scale(site.export_limit_kw, share),
            subscribed_power_kw=_scale(site.subscribed_power_kw, share),
            load_kw=_scale(site.load_kw, share),
            import_price_eur_per_kwh=site.import_price_eur_per_kwh,
            export_price_eur_per_kwh=site.export_price_eur_per_kwh,
            carbon_kg_per_kwh=site.carbon_kg_per_kwh,
        )
        sub_pv = [pv.model_copy(update={"forecast_kw": _scale(pv.forecast_kw, share)}) for pv in pvs]
        events = [
            DemandResponseEvent(**{**e.model_dump(), "max_import_kw": e.max_import_kw * share})
            for e in problem.dr_events
        ]
        out.append(problem.model_copy(update={"site": sub_site, "assets": [*members, *sub_pv], "dr_events": events}))
    return out


def in_context(problem: Problem, members: list[Asset], others_kw: np.ndarray) -> Problem:
    """A group's sub-problem with the whole site around it: the other groups' power is a fixed load."""
    load = np.array(problem.series(problem.site.load_kw)) + others_kw
    site = problem.site.model_copy(update={"load_kw": load.tolist()})
    pvs = [a for a in problem.assets if isinstance(a, PV)]
    return problem.model_copy(update={"site": site, "assets": [*members, *pvs]})


def group_power(members: list[Asset], sp: pd.DataFrame) -> np.ndarray:
    """The group's net consumption per step (what it adds to the site balance)."""
    total = np.zeros(len(sp))
    for a in members:
        if isinstance(a, EVCharger):
            total += sp[f"{a.id}.average_kw"].to_numpy()
        elif not isinstance(a, EVPool | PV):
            total += sp[f"{a.id}.power_kw"].to_numpy()
    return total


def _site_terms(problem: Problem, sp: pd.DataFrame) -> tuple[dict[str, ObjectiveTerm], list[Violation]]:
    pol, site = problem.policy, problem.site
    dt = np.array(problem.durations_h())
    imp, exp = sp["site.import_kw"].to_numpy(), sp["site.export_kw"].to_numpy()
    price_in = np.array(problem.series(site.import_price_eur_per_kwh))
    price_out = np.array(problem.series(site.export_price_eur_per_kwh))
    carbon = np.array(problem.series(site.carbon_kg_per_kwh))
    cost = float(((imp * price_in - exp * price_out) * dt).sum())
    kg = float((imp * carbon * dt).sum())
    peak = float(imp.max()) if len(imp) else 0.0
    terms = {
        "energy_cost": ObjectiveTerm("energy_cost", cost, "EUR", pol.cost_weight * cost),
        "carbon": ObjectiveTerm("carbon", kg, "kg", pol.carbon_eur_per_kg * kg),
        "peak": ObjectiveTerm("peak", peak, "kW", pol.peak_eur_per_kw * peak),
    }
    t0 = problem.step_starts()
    violations: list[Violation] = []
    if site.subscribed_power_kw is not None:
        over = np.maximum(imp - np.array(problem.series(site.subscribed_power_kw)), 0.0) * dt
        terms["power_overshoot"] = ObjectiveTerm(
            "power_overshoot", float(over.sum()), "kW·h", pol.overshoot_eur_per_kw_h * float(over.sum())
        )
        violations += [
            Violation("site", "subscribed_power_overshoot", t0[t], t0[t + 1], float(v), "kW·h")
            for t, v in enumerate(over) if v > 1e-6
        ]
    dr_kwh, dr_eur = 0.0, 0.0
    for ev in problem.dr_events:
        for t in range(problem.steps):
            a, b = max(ev.start, t0[t]), min(ev.end, t0[t + 1])
            hours = (b - a).total_seconds() / 3600.0
            excess = max(0.0, imp[t] - ev.max_import_kw) * hours if hours > 0 else 0.0
            if excess > 1e-6:
                dr_kwh += excess
                dr_eur += excess * ev.value_eur_per_kwh
                violations.append(Violation(ev.id, "dr_noncompliance", a, b, excess, "kWh"))
    if problem.dr_events:
        terms["dr_noncompliance"] = ObjectiveTerm("dr_noncompliance", dr_kwh, "kWh", dr_eur)
    return terms, violations


def combine(
    problem: Problem,
    groups: list[list[Asset]],
    subs: list[Schedule],
    pv: pd.DataFrame,
    settings: Settings,
    notes: list[str],
) -> Schedule:
    """One schedule from the groups' asset setpoints and the PV setpoints, netted at the site meter."""
    idx = pd.DatetimeIndex(problem.step_starts()[:-1], name="time")
    parts = []
    net = np.array(problem.series(problem.site.load_kw), dtype=float)
    for members, s in zip(groups, subs, strict=True):
        ids = {a.id for a in members}
        parts.append(s.setpoints[[c for c in s.setpoints.columns if c.split(".")[0] in ids]])
        net += group_power(members, s.setpoints)
    for c in pv.columns:
        if c.endswith(".power_kw"):
            net -= pv[c].to_numpy()
    site = pd.DataFrame(
        {
            "site.import_kw": np.maximum(net, 0.0),
            "site.export_kw": np.maximum(-net, 0.0),
            "site.net_kw": net,
            "site.load_kw": problem.series(problem.site.load_kw),
        },
        index=idx,
    )
    setpoints = pd.concat([*parts, pv.set_axis(idx), site], axis=1)
    objective, site_violations = _site_terms(problem, setpoints)
    pv_ids = {c.split(".")[0] for c in pv.columns}
    for s in subs:
        # Asset-level terms only: each group's site terms were computed on its share, not the site.
        for name, term in s.objective.items():
            if name in SITE_TERMS:
                continue
            old = objective.get(name)
            objective[name] = ObjectiveTerm(
                name, term.value + (old.value if old else 0.0), term.unit, term.eur + (old.eur if old else 0.0)
            )
    asset_violations = [
        v for s in subs for v in s.violations
        if not v.hard and v.kind not in SITE_KINDS and v.asset_id.split("/")[0] not in pv_ids
    ]
    violations = asset_violations + site_violations + hard_limit_violations(problem, setpoints, settings)
    statuses = {s.status for s in subs}
    gaps = [s.mip_gap for s in subs if s.mip_gap is not None]
    if statuses == {"optimal"}:
        status = "optimal"
    else:
        status = "time_limit" if all(s.has_solution for s in subs) else "no_solution"
    return Schedule(
        setpoints=setpoints,
        objective=objective,
        violations=violations,
        status=status,
        solver=f"decomposed/{subs[0].solver}" if subs else "decomposed",
        mip_gap=max(gaps) if gaps else None,
        build_s=0.0,
        solve_s=0.0,
        n_variables=sum(s.n_variables for s in subs),
        n_binaries=sum(s.n_binaries for s in subs),
        n_constraints=sum(s.n_constraints for s in subs),
        notes=[*notes, *(n for s in subs for n in s.notes if not n.startswith("LP-rounding"))],
    )


def _pv_columns(problem: Problem, subs: list[Schedule]) -> pd.DataFrame:
    pv_ids = {a.id for a in problem.assets if isinstance(a, PV)}
    cols: dict[str, np.ndarray] = {}
    for s in subs:
        for c in s.setpoints.columns:
            if c.split(".")[0] in pv_ids:
                cols[c] = cols.get(c, 0.0) + s.setpoints[c].to_numpy()
    return pd.DataFrame(cols)


def solve_decomposed(
    problem: Problem, settings: Settings, solve_one: Callable[[Problem, Settings], Schedule]
) -> Schedule:
    """Pass 1 solves the groups on pro-rata shares of the site. Each coordination pass then re-solves
    every group in turn with the whole site around it and the other groups' latest power held fixed
    (block coordinate descent); the best recombined schedule is kept."""
    start = time.perf_counter()
    deadline = start + settings.time_limit_s
    groups = partition(problem, settings.group_size)
    per = settings.model_copy(
        update={"decompose": "never", "time_limit_s": max(1.0, settings.time_limit_s / len(groups))}
    )
    first = pro_rata(problem, groups)
    if settings.workers > 1 and len(first) > 1:
        # Spawned, not forked: the solver's worker threads in this process must not be copied mid-flight.
        with ProcessPoolExecutor(max_workers=settings.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            subs = list(pool.map(solve_one, first, [per] * len(first)))
    else:
        subs = [solve_one(sub, per) for sub in first]
    build_s = sum(s.build_s for s in subs)
    notes = [f"decomposed into {len(groups)} sub-districts; pass 1 shares the site limits pro rata"]
    failed = [g for g, s in enumerate(subs) if not s.has_solution]
    if failed:
        return Schedule(
            setpoints=pd.DataFrame(index=pd.DatetimeIndex(problem.step_starts()[:-1], name="time")),
            objective={}, violations=[], status="no_solution", solver="decomposed", mip_gap=None,
            build_s=build_s, solve_s=time.perf_counter() - start - build_s,
            notes=[*notes, f"{len(failed)} sub-district(s) found no schedule within their time limit"],
        )
    best = combine(problem, groups, subs, _pv_columns(problem, subs), settings, notes)
    powers = [group_power(g, s.setpoints) for g, s in zip(groups, subs, strict=True)]
    passes_done = 0
    for _ in range(settings.coordination_passes):
        slowest = max(s.build_s + s.solve_s for s in subs)
        if time.perf_counter() + slowest * len(groups) > deadline:
            notes.append("no time left for a coordination pass")
            break
        last: Schedule | None = None
        for g, members in enumerate(groups):
            others = sum((p for h, p in enumerate(powers) if h != g), np.zeros(problem.steps))
            left = (deadline - time.perf_counter()) / (len(groups) - g)
            step = per.model_copy(update={"time_limit_s": max(1.0, left)})
            sub = solve_one(in_context(problem, members, others), step)
            build_s += sub.build_s
            if sub.has_solution:
                subs[g], last = sub, sub
                powers[g] = group_power(members, sub.setpoints)
        passes_done += 1
        pv = _pv_columns(problem, [last]) if last is not None else best.setpoints[[]]
        candidate = combine(
            problem, groups, subs, pv, settings, [*notes, f"{passes_done} coordination pass(es)"]
        )
        if candidate.objective_eur <= best.objective_eur:
            best = candidate
    best.notes.append("the gap is the largest sub-problem gap, not a bound on the whole district")
    best.build_s = build_s
    best.solve_s = time.perf_counter() - start - build_s
    return best
