"""Rolling horizon: the next problem, some steps later, starting from where a schedule leaves the assets.

In service the state comes from measurements and the series from fresh forecasts; this gives the
planned state (what a closed loop without disturbances would see) and shifts the series by holding
their last value, so the horizon keeps its length.
"""

from __future__ import annotations

from datetime import timedelta

from optimizer.problem import (
    PV,
    Battery,
    DeferrableLoad,
    EVCharger,
    HotWaterTank,
    LightingZone,
    Problem,
    PublicLightingCircuit,
    Site,
    ThermalZone,
)
from optimizer.schedule import Schedule


def _shift(value: list, k: int) -> list:
    rest = value[k:]
    return rest + [value[-1]] * (len(value) - len(rest))


def _shift_fields(
    obj: Site | PV | ThermalZone | LightingZone | PublicLightingCircuit | HotWaterTank, k: int, n: int
) -> dict:
    return {
        name: _shift(v, k)
        for name, v in obj
        if isinstance(v, list) and len(v) == n and isinstance(v[0], float | int | bool | str)
    }


def roll_forward(problem: Problem, schedule: Schedule, steps: int) -> Problem:
    """The problem `steps` steps later, its initial state taken from `schedule`."""
    n = problem.steps
    if not 0 < steps < n:
        raise ValueError(f"steps must be between 1 and {n - 1}")
    t = problem.step_starts()
    new_start = t[steps]
    sp = schedule.setpoints
    durations = problem.durations_h()
    assets = []
    for a in problem.assets:
        if isinstance(a, Battery):
            assets.append(a.model_copy(update={"initial_energy_kwh": float(sp[f"{a.id}.energy_kwh"].iloc[steps - 1])}))
        elif isinstance(a, ThermalZone):
            update = _shift_fields(a, steps, n)
            update["initial_temperature_c"] = float(sp[f"{a.id}.temperature_c"].iloc[steps - 1])
            if f"{a.id}.mass_temperature_c" in sp:
                update["initial_mass_temperature_c"] = float(sp[f"{a.id}.mass_temperature_c"].iloc[steps - 1])
            assets.append(a.model_copy(update=update))
        elif isinstance(a, EVCharger):
            power = sp[f"{a.id}.power_kw"].to_numpy()
            sessions = []
            for s in a.sessions:
                if s.departure <= new_start:
                    continue
                delivered = 0.0
                for i in range(steps):
                    overlap = (min(s.departure, t[i + 1]) - max(s.arrival, t[i])).total_seconds() / 3600.0
                    if overlap > 0:
                        delivered += float(power[i]) * overlap * a.efficiency
                sessions.append(s.model_copy(update={
                    "arrival": max(s.arrival, new_start),
                    "energy_needed_kwh": max(0.0, s.energy_needed_kwh - delivered),
                }))
            assets.append(a.model_copy(update={"sessions": sessions}))
        elif isinstance(a, DeferrableLoad):
            started = [i for i, v in enumerate(sp[f"{a.id}.started"].to_numpy()) if v > 0.5]
            if started and started[0] < steps:
                done = steps - started[0]
                remaining = a.power_profile_kw[done:]
                if not remaining:
                    continue
                # Running: it carries on now, with what is left of its profile.
                end = new_start + timedelta(hours=sum(durations[steps:steps + len(remaining)]))
                assets.append(a.model_copy(update={
                    "earliest_start": new_start, "finish_by": end, "power_profile_kw": remaining,
                }))
            else:
                assets.append(a.model_copy(update={"earliest_start": max(a.earliest_start, new_start)}))
        elif isinstance(a, HotWaterTank):
            update = _shift_fields(a, steps, n)
            temperatures = sp[f"{a.id}.temperature_c"].to_numpy()
            update["initial_temperature_c"] = float(temperatures[steps - 1])
            due = a.legionella_due_by
            if due is not None and (temperatures[:steps] >= a.legionella_temperature_c - 1e-6).any():
                update["legionella_due_by"] = None  # disinfected: the next cycle is not due yet
            assets.append(a.model_copy(update=update))
        elif isinstance(a, PV | LightingZone | PublicLightingCircuit):
            assets.append(a.model_copy(update=_shift_fields(a, steps, n)))
        else:
            assets.append(a)
    site = problem.site.model_copy(update=_shift_fields(problem.site, steps, n))
    update: dict[str, object] = {"start": new_start, "site": site, "assets": assets}
    if problem.step_durations_min is not None:
        update["step_durations_min"] = _shift(problem.step_durations_min, steps)
    return problem.model_copy(update=update)

