"""A policy against another on the same horizon: the figures an energy manager weighs, and each
violation in words."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from gridctl.api.models import PlanFigures, ViolationOut
from optimizer import Schedule
from optimizer.schedule import Violation

_WORDS = {
    "too_cold": "colder than the comfort band",
    "too_warm": "warmer than the comfort band",
    "ev_energy_unmet": "car not charged as asked by its departure",
    "under_illumination": "less light than required",
    "under_lighting": "street lighting below its required level",
    "subscribed_power_overshoot": "above the subscribed power",
    "dr_noncompliance": "above the demand-response limit",
    "energy_out_of_band": "battery outside its charge band",
    "not_run": "appliance not run in its window",
    "import_limit": "import above the site's limit",
    "export_limit": "export above the site's limit",
    "pool_limit": "charging above the pool's limit",
}


def describe(v: Violation, tz: ZoneInfo) -> str:
    what = _WORDS.get(v.kind, v.kind.replace("_", " "))
    start, end = v.start.astimezone(tz), v.end.astimezone(tz)
    until = f"{end:%H:%M}" if start.date() == end.date() else f"{end:%d/%m %H:%M}"
    hard = " (hard limit)" if v.hard else ""
    return f"{v.asset_id}: {what}, {v.amount:.1f} {v.unit}, {start:%d/%m %H:%M}–{until}{hard}"


def _term(schedule: Schedule, name: str) -> float | None:
    term = schedule.objective.get(name)
    return None if term is None else float(term.value)


def figures(schedule: Schedule, tz: ZoneInfo) -> PlanFigures:
    if not schedule.has_solution:
        return PlanFigures(status=schedule.status, objective_eur=None, cost_eur=None, co2_kg=None, peak_kw=None,
                           discomfort_k_h=0.0, ev_unmet_kwh=0.0, violations=[])
    return PlanFigures(
        status=schedule.status, objective_eur=round(schedule.objective_eur, 4),
        cost_eur=_term(schedule, "energy_cost"), co2_kg=_term(schedule, "carbon"), peak_kw=_term(schedule, "peak"),
        discomfort_k_h=_term(schedule, "discomfort") or 0.0, ev_unmet_kwh=_term(schedule, "ev_unmet") or 0.0,
        violations=[ViolationOut(asset_id=v.asset_id, kind=v.kind, start=v.start, end=v.end, amount=v.amount,
                                 unit=v.unit, hard=v.hard, text=describe(v, tz)) for v in schedule.violations],
    )
