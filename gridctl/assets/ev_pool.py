"""A pool of EV chargers under one power limit: current limits, plug states, the cars' declared needs."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd

import optimizer as opt
from drivers.base import Value
from gridctl.assets.base import (
    AssetAdapter,
    AssetForecast,
    DispatchContext,
    ForecastContext,
    ForecastModel,
    Number,
    ObservationBatch,
    PolicyDefaults,
    ProblemContext,
    SiteCheck,
    power_kw,
    present,
)
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, SETPOINT, STATE, Role
from gridctl.config.units import Quantity
from gridctl.dispatch import WriteRequest
from gridctl.forecast.ev import Plug, PlugStates, SessionHistory, SessionTracker, ev_session
from gridctl.service.snapshot import Snapshot

if TYPE_CHECKING:
    from gridctl.config.yamlsource import PathKey

# Below this a car's remaining need is nothing to plan for.
MIN_NEED_KWH = 0.05

CHARGER_ROLES = MappingProxyType({
    "current_limit": Role(Quantity.CURRENT, SETPOINT, required=True, writable=True),
    "power": Role(Quantity.POWER, MEASURED, required=True),
    "plug_state": Role(Quantity.DIMENSIONLESS, STATE, required=True),
    "session_energy": Role(Quantity.ENERGY, COUNTER),
    "energy": Role(Quantity.ENERGY, COUNTER),
    # The car's or driver's declared needs (ISO 15118 / OCPP 2.0.1 charging needs, a charging app):
    # time left until the announced departure and energy asked for this session, 0 when undeclared.
    "time_to_departure": Role(Quantity.DURATION, MEASURED),
    "energy_request": Role(Quantity.ENERGY, MEASURED),
})


def charger_power_kw(charger: m.EvCharger, current_a: float) -> float:
    return current_a * charger.voltage_v * charger.phases / 1000.0


def current_for(charger: m.EvCharger, power_kw: float) -> float:
    """Current limit giving `power_kw`, 0 below the charger's minimum (it would not charge anyway)."""
    if power_kw <= 1e-6:
        return 0.0
    amps = power_kw * 1000.0 / (charger.voltage_v * charger.phases)
    if amps < charger.min_current_a - 1e-6:
        return 0.0
    return round(min(amps, charger.max_current_a), 1)


def plug_states(site: m.Site, charger: m.EvCharger) -> PlugStates:
    """What the raw values of a charger's plug-state point mean, from its labels."""
    try:
        return PlugStates(site.point(charger.points["plug_state"]).states)
    except KeyError:
        return PlugStates(None)


class EvPool(AssetAdapter[m.EvChargerPool]):
    type = "ev_charger_pool"
    model = m.EvChargerPool
    flow = "ev"
    roles = MappingProxyType({"power": Role(Quantity.POWER, MEASURED)})

    @cached_property
    def _plugs(self) -> dict[str, PlugStates]:
        return {c.id: plug_states(self.site, c) for c in self.asset.chargers}

    @cached_property
    def _plug_by_address(self) -> dict[str, PlugStates]:
        return {c.points["plug_state"]: self._plugs[c.id] for c in self.asset.chargers}

    def plug(self, snapshot: Snapshot, charger: m.EvCharger) -> Plug | None:
        """What the charger's last plug state says (None when unknown)."""
        return self._plugs[charger.id].of(snapshot.number(charger.points["plug_state"]))

    def watched_points(self) -> list[str]:
        # Without a charger's plug state the pool can't tell who needs its share; without its power, what
        # the pool draws: either way the plan is no longer safe to follow for the whole pool.
        return [c.points[role] for c in self.asset.chargers for role in ("plug_state", "power")]

    def observed_points(self) -> set[str]:
        return present(self.asset.points, ("power",)) | {
            address for c in self.asset.chargers for address in present(c.points, ("power", "plug_state",
                                                                                  "session_energy"))}

    def power_points(self) -> list[str]:
        return [c.points["power"] for c in self.asset.chargers]

    def policy_defaults(self) -> PolicyDefaults:
        return PolicyDefaults(chargers=tuple(self.asset.chargers))

    def power_kw(self, number: Number) -> float:
        return sum(power_kw(self.site, number, c.points["power"]) for c in self.asset.chargers)

    def replan_points(self) -> set[str]:
        return {c.points["plug_state"] for c in self.asset.chargers}

    def replan_on(self, address: str, before: Value | None, after: Value | None) -> bool:
        # A car just arrived: plan for it now rather than at the next scheduled optimisation.
        states = self._plug_by_address.get(address)
        if states is None or isinstance(before, str) or isinstance(after, str):
            return False
        plugged = (Plug.WANTING, Plug.FULL)
        was = states.of(None if before is None else float(before))
        now = states.of(None if after is None else float(after))
        return now in plugged and was not in plugged

    def forecast_model(self, history_days: int) -> _Sessions:
        return _Sessions(self, history_days)

    # ------------------------------------------------------------------ optimiser

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        asset, forecasts, policy = self.asset, ctx.forecasts, ctx.policy
        by_charger: dict[str, list[opt.EVSession]] = {c.id: [] for c in asset.chargers}
        chargers = {c.id: c for c in asset.chargers}
        for session in forecasts.ev_sessions:
            if session.charger_id not in by_charger or session.departure <= ctx.start or session.arrival >= ctx.end:
                continue
            arrival = max(session.arrival, ctx.start)
            needed = max(session.energy_needed_kwh, min(policy.ev_minimum_energy_kwh, session.energy_needed_kwh))
            if needed > MIN_NEED_KWH:
                # A charger gives at least its minimum power for a step: a smaller remainder could not be
                # planned at all, and the car stops by itself once full.
                charger = chargers[session.charger_id]
                needed = max(needed, charger_power_kw(charger, charger.min_current_a) * ctx.step / timedelta(hours=1))
            by_charger[session.charger_id].append(
                opt.EVSession(arrival=arrival, departure=session.departure, energy_needed_kwh=max(needed, 0.0),
                              id=f"{session.arrival:%Y%m%dT%H%M}"))
        out: list[opt.Asset] = []
        for charger in asset.chargers:
            sessions = sorted(by_charger[charger.id], key=lambda s: s.arrival)
            # Forecast sessions of one charger must not overlap: keep the earlier one.
            kept: list[opt.EVSession] = []
            for session in sessions:
                if kept and session.arrival < kept[-1].departure:
                    continue
                kept.append(session)
            # The policy may cap what any one charger gives a car.
            max_power_kw = min(charger.max_power_kw, policy.ev_max_power_kw or charger.max_power_kw)
            out.append(opt.EVCharger(
                id=charger.id, max_power_kw=max_power_kw,
                min_power_kw=charger_power_kw(charger, charger.min_current_a), sessions=kept))
        out.append(opt.EVPool(id=asset.id, max_power_kw=asset.pool_limit_kw,
                              charger_ids=[c.id for c in asset.chargers]))
        return out

    # ------------------------------------------------------------------ dispatch

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        power = self._serve_unplanned_cars(ctx)
        return [ctx.request(c.points["current_limit"], current_for(c, power[c.id])) for c in self.asset.chargers]

    def _serve_unplanned_cars(self, ctx: DispatchContext) -> dict[str, float]:
        """Each charger's power this step: the plan's, except that a car still wanting energy which the
        plan gives nothing from now on (it arrived after the plan was made, or stays past the departure
        the plan assumed) charges as it would without gridctl, and an empty charger offers what is left,
        so a car arriving before the next plan starts at once. Both only within what the plan leaves of
        the pool's and the site's limits, cars already there first."""
        pool, snapshot = self.asset, ctx.snapshot
        power = {c.id: ctx.planned_value(f"{c.id}.power_kw") or 0.0 for c in pool.chargers}
        ahead = ctx.ahead()
        unplanned = [c for c in pool.chargers if self.plug(snapshot, c) == Plug.WANTING and power[c.id] < 1e-6
                     and float(ahead.get(f"{c.id}.power_kw", pd.Series(dtype=float)).fillna(0.0).sum()) < 1e-6]
        empty = [c for c in pool.chargers if ctx.correct and self.plug(snapshot, c) == Plug.EMPTY
                 and power[c.id] < 1e-6]
        headroom_kw = pool.pool_limit_kw - sum(power.values())
        planned_import = ctx.planned_value("site.import_kw")
        if planned_import is not None:
            headroom_kw = min(headroom_kw, ctx.import_limit_kw - planned_import)
        for group in (unplanned, empty):
            if not group or headroom_kw <= 0.0:
                continue
            share_kw = headroom_kw / len(group)
            for charger in group:
                power[charger.id] = min(share_kw, charger.max_power_kw)
                headroom_kw -= power[charger.id]
        return power

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        """Every charger at its fallback current: the pool's limit shared equally among the chargers that
        may hold a car (those whose last plug state says plugged, and those whose plug state is stale or
        unknown: a car may have arrived), each within its own maximum. Counting the doubtful ones keeps
        the pool within its limit whatever they hold, and a car there keeps charging. When an equal share
        is below a charger's minimum current (a car does not charge below it), chargers get their minimum
        in file order while the limit allows, the others 0 A. A charger known to be empty gets 0 A until
        a car is seen on it."""
        chargers, snapshot = self.asset.chargers, ctx.snapshot
        candidates = [c for c in chargers if self.plug(snapshot, c) in (Plug.WANTING, Plug.FULL)
                      or not snapshot.is_fresh(c.points["plug_state"])]
        amps = dict.fromkeys((c.id for c in chargers), 0.0)
        remaining_kw = self.asset.pool_limit_kw
        for position, charger in enumerate(candidates):
            share_kw = min(remaining_kw / (len(candidates) - position), charger.max_power_kw)
            # Rounded down to the charger's 0.1 A resolution, so the shares never add up past the limit.
            current = math.floor(share_kw * 1000.0 / (charger.voltage_v * charger.phases) * 10.0 + 1e-6) / 10.0
            if current < charger.min_current_a:
                fits = charger_power_kw(charger, charger.min_current_a) <= remaining_kw + 1e-6
                current = charger.min_current_a if fits else 0.0
            amps[charger.id] = min(current, charger.max_current_a)
            remaining_kw -= charger_power_kw(charger, amps[charger.id])
        return [ctx.request(c.points["current_limit"], amps[c.id]) for c in chargers]

    def baseline(self, ctx: DispatchContext) -> list[WriteRequest]:
        # Cars charge at full power on plug-in.
        return [ctx.request(c.points["current_limit"], c.max_current_a) for c in self.asset.chargers]

    # ------------------------------------------------------------------ KPIs, checks

    def physics_kpis(self, physics: Any, kpis: Any) -> _ServedSessions:
        return _ServedSessions(physics, [c.id for c in self.asset.chargers])

    def check(self, checks: SiteCheck, path: PathKey) -> None:
        checks.unique((*path, "chargers"), [c.id for c in self.asset.chargers], "charger")
        for index, charger in enumerate(self.asset.chargers):
            charger_path = (*path, "chargers", index)
            checks.roles((*charger_path, "points"), charger.points, CHARGER_ROLES, "ev_charger")
            if charger.min_current_a > charger.max_current_a:
                checks.report((*charger_path, "min_current_a"), "min_current_a exceeds max_current_a")
            address = charger.points.get("current_limit")
            point = checks.point(address) if address else None
            if point is not None and point.max is not None and point.max < charger.max_current_a:
                checks.report((*charger_path, "max_current_a"),
                              f"max_current_a {charger.max_current_a} A exceeds the limit of {address} ({point.max} A)")
            plug_address = charger.points.get("plug_state")
            plug = checks.point(plug_address) if plug_address else None
            if plug is not None and not plug.states:
                checks.report((*charger_path, "points", "plug_state"),
                              f"{plug_address} has no states: its labels (plugged, charging, finished, ...) tell "
                              f"gridctl what its values mean")
            elif plug is not None:
                unknown = PlugStates.unknown_labels(plug.states)
                if unknown:
                    checks.report((*charger_path, "points", "plug_state"),
                                  f"{plug_address}: state labels {', '.join(map(repr, unknown))} say nothing gridctl "
                                  f"knows; use e.g. available, plugged, charging, finished, fault")


class _Sessions(ForecastModel):
    """Cars plugged in now and what to plan for them: what each declared, else what the pool's past
    sessions (learnt from its quarter-hour samples) say of a car that arrived then."""

    def __init__(self, adapter: EvPool, history_days: int) -> None:
        self.adapter = adapter
        self.pool = adapter.asset
        self.plugged_since: dict[str, datetime] = {}
        self.history = SessionHistory(adapter.site.tz)
        self.trackers = {c.id: SessionTracker(c.id) for c in self.pool.chargers}

    def track(self, snapshot: Snapshot) -> None:
        for charger in self.pool.chargers:
            plug = self.adapter.plug(snapshot, charger)
            if plug in (Plug.WANTING, Plug.FULL):
                # A car the history saw before this cycle arrived when the history says.
                arrival = self.trackers[charger.id].arrival
                self.plugged_since.setdefault(charger.id, min(arrival or snapshot.taken_at, snapshot.taken_at))
            elif plug == Plug.EMPTY:
                self.plugged_since.pop(charger.id, None)

    def sample(self, number: Number) -> dict[str, tuple[Plug | None, float | None, float | None]]:
        out = {}
        for charger in self.pool.chargers:
            points = charger.points
            out[charger.id] = (self.adapter._plugs[charger.id].of(number(points["plug_state"])),
                               _kw(self.adapter.site, number, points["power"]),
                               number(points["session_energy"]) if "session_energy" in points else None)
        return out

    def learn(self, batch: ObservationBatch, samples: list[Any | None]) -> None:
        step = timedelta(minutes=15)
        for moment, sample in zip(batch.moments, samples, strict=True):
            if sample is None:
                continue
            for charger_id, (plug, power, session_kwh) in sample.items():
                ended = self.trackers[charger_id].add(moment, step, plug, power, session_kwh)
                if ended is not None:
                    self.history.add(ended)

    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        snapshot = ctx.snapshot
        sessions = []
        for charger in self.pool.chargers:
            since = self.plugged_since.get(charger.id)
            if since is None or self.adapter.plug(snapshot, charger) != Plug.WANTING:
                continue
            delivered = snapshot.number(charger.points.get("session_energy", "")) or 0.0
            sessions.append(ev_session(charger, since, snapshot.taken_at, delivered,
                                       snapshot.number(charger.points.get("time_to_departure", "")),
                                       snapshot.number(charger.points.get("energy_request", "")), self.history))
        return AssetForecast(ev_sessions=sessions)


def _kw(site: m.Site, number: Number, address: str) -> float | None:
    return None if number(address) is None else power_kw(site, number, address)


class _ServedSessions:
    """Sessions that departed within the run: what they asked and what they got."""

    def __init__(self, physics: Any, charger_ids: list[str]) -> None:
        self.physics = physics
        self.charger_ids = charger_ids

    def step(self, kpis: Any, middle: datetime, hours: float) -> None:
        pass

    def finish(self, kpis: Any, start: datetime, end: datetime) -> None:
        departed = sessions_departed(self.physics, start, end, self.charger_ids)
        kpis.ev_requested_kwh += sum(asked for _, asked, _ in departed)
        kpis.ev_unmet_kwh += sum(max(asked - got, 0.0) for _, asked, got in departed)


def sessions_departed(physics: Any, start: datetime, end: datetime,
                      charger_ids: list[str] | None = None) -> list[tuple[str, float, float]]:
    """(charger, requested, delivered) of every session that departed within [start, end)."""
    out = []
    for charger_id, component in physics.chargers.items():
        if charger_ids is not None and charger_id not in charger_ids:
            continue
        model = component.model
        if model.schedule is None:
            continue
        day = start - timedelta(days=1)
        seen = set()
        while day < end:
            for session in model.schedule.around(day):
                if session.arrival in seen or not start <= session.departure < end:
                    continue
                seen.add(session.arrival)
                _asked, got = model.served.get(session.arrival, (session.energy_kwh, 0.0))
                out.append((charger_id, session.energy_kwh, got))
            day += timedelta(days=1)
    return out
