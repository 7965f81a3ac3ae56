"""Decompose a large district into sub-districts solved one by one, then recombine them.

The assets of a district only interact through the site connection (import/export limits, subscribed
power, peak, demand-response caps). Each sub-district gets a share of those site limits in proportion
to its number of assets, and the full policy weights; energy prices and carbon are separable, so they
are exact. The recombined schedule nets the sub-districts' flows at the site meter, and the site-level
terms, violations and hard limits are computed again on it. Pools stay whole with their chargers.
"""

from __future__ import annotations

import math
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


def split(problem: Problem, group_size: int) -> list[Problem]:
    pools = [a for a in problem.assets if isinstance(a, EVPool)]
    pooled = {cid for p in pools for cid in p.charger_ids}
    chargers = {a.id: a for a in problem.assets if isinstance(a, EVCharger)}
    units: list[list[Asset]] = [[p, *(chargers[c] for c in p.charger_ids)] for p in pools]
    units += [[a] for a in problem.assets if not isinstance(a, PV | EVPool) and a.id not in pooled]
    pvs = [a for a in problem.assets if isinstance(a, PV)]
    total = sum(len(u) for u in units)
    n_groups = max(1, math.ceil(total / group_size))
    # Deal each kind of asset across the groups so every sub-district has a similar mix.
    units.sort(key=lambda u: (type(u[0]).__name__, -len(u)))
    groups: list[list[Asset]] = [[] for _ in range(n_groups)]
    sizes = [0] * n_groups
    for u in units:
        g = int(np.argmin(sizes))
        groups[g].extend(u)
        sizes[g] += len(u)
    out = []
    site = problem.site
    for members, size in zip(groups, sizes, strict=True):
        share = size / total if total else 1.0 / n_groups
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


def combine(problem: Problem, subs: list[Schedule], settings: Settings) -> Schedule:
    idx = pd.DatetimeIndex(problem.step_starts()[:-1], name="time")
    pv_ids = {a.id for a in problem.assets if isinstance(a, PV)}
    parts, pv_cols = [], {}
    net = np.zeros(len(idx))
    for s in subs:
        sp = s.setpoints
        net += sp["site.net_kw"].to_numpy()
        keep = [c for c in sp.columns if not c.startswith("site.") and c.split(".")[0] not in pv_ids]
        parts.append(sp[keep])
        for c in sp.columns:
            if c.split(".")[0] in pv_ids:
                pv_cols[c] = pv_cols.get(c, 0.0) + sp[c].to_numpy()
    site = pd.DataFrame(
        {
            "site.import_kw": np.maximum(net, 0.0),
            "site.export_kw": np.maximum(-net, 0.0),
            "site.net_kw": net,
            "site.load_kw": problem.series(problem.site.load_kw),
        },
        index=idx,
    )
    setpoints = pd.concat([*parts, pd.DataFrame(pv_cols, index=idx), site], axis=1)
    objective, site_violations = _site_terms(problem, setpoints)
    for s in subs:
        for name, term in s.objective.items():
            if name in SITE_TERMS:
                continue
            old = objective.get(name)
            objective[name] = ObjectiveTerm(
                name, term.value + (old.value if old else 0.0), term.unit, term.eur + (old.eur if old else 0.0)
            )
    asset_violations = [v for s in subs for v in s.violations if not v.hard and v.kind not in SITE_KINDS]
    violations = asset_violations + site_violations + hard_limit_violations(problem, setpoints, settings)
    statuses = {s.status for s in subs}
    gaps = [s.mip_gap for s in subs if s.mip_gap is not None]
    return Schedule(
        setpoints=setpoints,
        objective=objective,
        violations=violations,
        status="optimal" if statuses == {"optimal"} else ("time_limit" if all(s.has_solution for s in subs)
                                                          else "no_solution"),
        solver=f"decomposed/{subs[0].solver}" if subs else "decomposed",
        mip_gap=max(gaps) if gaps else None,
        build_s=sum(s.build_s for s in subs),
        solve_s=sum(s.solve_s for s in subs),
        n_variables=sum(s.n_variables for s in subs),
        n_binaries=sum(s.n_binaries for s in subs),
        n_constraints=sum(s.n_constraints for s in subs),
        notes=[
            f"decomposed into {len(subs)} sub-districts sharing the site limits pro rata; "
            "the gap is the largest sub-district gap",
            *(n for s in subs for n in s.notes if not n.startswith("LP-rounding")),
        ],
    )


def solve_decomposed(
    problem: Problem, settings: Settings, solve_one: Callable[[Problem, Settings], Schedule]
) -> Schedule:
    start = time.perf_counter()
    subs = split(problem, settings.group_size)
    per = settings.model_copy(
        update={"decompose": "never", "time_limit_s": max(1.0, settings.time_limit_s * settings.workers / len(subs))}
    )
    if settings.workers > 1 and len(subs) > 1:
        with ProcessPoolExecutor(max_workers=settings.workers) as pool:
            results = list(pool.map(solve_one, subs, [per] * len(subs)))
    else:
        results = [solve_one(sub, per) for sub in subs]
    schedule = combine(problem, results, settings)
    elapsed = time.perf_counter() - start
    # Wall-clock figures: the sub-district times overlap when solved in parallel.
    schedule.solve_s = elapsed - schedule.build_s / max(1, settings.workers)
    schedule.build_s = schedule.build_s / max(1, settings.workers)
    return schedule
