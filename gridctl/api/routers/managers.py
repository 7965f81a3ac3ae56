"""Energy managers: versioned policies, schedule previews, KPIs and demand-response events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.exceptions import RequestValidationError

from gridctl.alarms import AlarmKind
from gridctl.api import privacy
from gridctl.api.auth import MANAGER
from gridctl.api.context import ApiContext, context, not_found, runtime_in_scope, site_in_scope
from gridctl.api.db import Conflict
from gridctl.api.energy import Resolution
from gridctl.api.kpis import site_kpis
from gridctl.api.models import (
    DemandResponseOut,
    KpisOut,
    PolicyChange,
    PolicyPreviewRequest,
    PolicyVersionOut,
    RejectedVersionOut,
    ScheduleOut,
    SiteValuesOut,
    StoredVersionOut,
    ThermalFit,
    ThermalModelOut,
    ThermalParameters,
    WhatIfOut,
    ZoneValues,
)
from gridctl.api.periods import period
from gridctl.api.policies import current_state, event_subject, policy_replaced
from gridctl.api.responses import errors
from gridctl.api.routers.operators import asset_names, schedule_body
from gridctl.api.store import DemandResponseRecord, User
from gridctl.api.whatif import figures
from gridctl.assets import site_adapters
from gridctl.config.models import ThermalModel, TimeWindow
from gridctl.forecast.identify import FitError, ThermalEstimate, site_file_estimate
from gridctl.policy import (
    DemandResponse,
    PolicyProblem,
    PolicyState,
    PolicyVersion,
    RejectedPolicy,
    SitePolicy,
    event_problems,
    policy_state,
    submission_problems,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/sites", tags=["energy managers"])


def changed_fields(before: SitePolicy | None, after: SitePolicy) -> list[str]:
    """Dotted names of the settings that differ between two policies."""
    old = (before or SitePolicy()).model_dump(mode="json")
    new = after.model_dump(mode="json")
    out: list[str] = []

    def walk(a: object, b: object, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        elif a != b:
            out.append(path)

    walk(old, new, "")
    return out


def _rejected_out(rejected: RejectedPolicy) -> RejectedVersionOut:
    return RejectedVersionOut(version=rejected.version, author=rejected.author, comment=rejected.comment,
                              created_at=rejected.created_at, problem=rejected.problem)


def _version_out(site_id: str, version: PolicyVersion | None, previous: PolicyVersion | None,
                 rejected: Sequence[RejectedPolicy] = ()) -> PolicyVersionOut:
    rejected_out = [_rejected_out(r) for r in rejected]
    if version is None:
        return PolicyVersionOut(site_id=site_id, version=None, author=None, comment="site defaults",
                                created_at=None, policy=SitePolicy(), changed=[], rejected=rejected_out)
    return PolicyVersionOut(
        site_id=site_id, version=version.version, author=version.author, comment=version.comment,
        created_at=version.created_at, policy=version.policy,
        changed=changed_fields(previous.policy if previous else None, version.policy), rejected=rejected_out,
    )


def _stored_out(site_id: str, stored: list[PolicyVersion | RejectedPolicy]) -> list[StoredVersionOut]:
    """Every stored version; `changed` compares each valid one with the valid one before it."""
    out = []
    previous: PolicyVersion | None = None
    for item in stored:
        if isinstance(item, RejectedPolicy):
            out.append(StoredVersionOut(site_id=site_id, version=item.version, author=item.author,
                                        comment=item.comment, created_at=item.created_at, policy=None, changed=[],
                                        problem=item.problem))
            continue
        out.append(StoredVersionOut(site_id=site_id, version=item.version, author=item.author, comment=item.comment,
                                    created_at=item.created_at, policy=item.policy,
                                    changed=changed_fields(previous.policy if previous else None, item.policy)))
        previous = item
    return out


def _refuse(location: tuple[str, ...], problems: list[PolicyProblem]) -> None:
    if problems:
        raise RequestValidationError([
            {"type": "value_error", "loc": (*location, *p.loc), "msg": p.message, "input": None} for p in problems
        ])


@router.get("/{site_id}/policy", response_model=PolicyVersionOut, responses=errors(404),
            summary="The policy in force, and any newer stored version that no longer validates")
async def current_policy(site_id: str, user: User = Depends(MANAGER),
                         ctx: ApiContext = Depends(context)) -> PolicyVersionOut:
    site = site_in_scope(ctx, user, site_id)
    stored = await ctx.store.policies(site_id)
    state = policy_state(stored, site)
    previous = None
    if state.in_force is not None:
        earlier = [v for v in _with_site_verdicts(stored, state)
                   if isinstance(v, PolicyVersion) and v.version < state.in_force.version]
        previous = earlier[-1] if earlier else None
    return _version_out(site_id, state.in_force, previous, state.rejected)


def _window(w: TimeWindow) -> str:
    return f"{w.start:%H:%M}-{w.end:%H:%M}"


@router.get("/{site_id}/policy/site-values", response_model=SiteValuesOut, responses=errors(404),
            summary="What the site description sets and a policy may override (the policy form's defaults)")
async def site_values(site_id: str, user: User = Depends(MANAGER), ctx: ApiContext = Depends(context)) -> SiteValuesOut:
    site = site_in_scope(ctx, user, site_id)
    defaults = [(adapter.asset, adapter.policy_defaults()) for adapter in site_adapters(site)]
    zones = [(asset, d.comfort) for asset, d in defaults if d.comfort is not None]
    chargers = [c for _, d in defaults for c in d.chargers]
    lights = [(asset, d) for asset, d in defaults if d.street_lighting]
    curfew = next((d.curfew for _, d in lights if d.curfew is not None), None)
    return SiteValuesOut(
        site_id=site.id, timezone=site.timezone,
        zones=[ZoneValues(id=z.id, name=z.name or z.id, building=z.building,
                          occupied=(occupied.min_temperature_c, occupied.max_temperature_c),
                          unoccupied=(unoccupied.min_temperature_c, unoccupied.max_temperature_c),
                          occupied_hours=[_window(w) for w in hours]) for z, (occupied, unoccupied, hours) in zones],
        chargers=len(chargers), charger_max_power_kw=max((c.max_power_kw for c in chargers), default=None),
        import_limit_kw=site.grid.import_limit_kw, subscribed_power_kw=site.grid.subscribed_power_kw,
        public_lighting=[a.name or a.id for a, _ in lights], curfew=_window(curfew) if curfew else None,
        buildings=[b.id for b in site.buildings],
    )


def _with_site_verdicts(stored: list[PolicyVersion | RejectedPolicy],
                        state: PolicyState) -> list[PolicyVersion | RejectedPolicy]:
    """Stored versions, those the site rejects (a zone since removed) shown as rejected."""
    rejected = {r.version: r for r in state.rejected}
    return [rejected.get(v.version, v) for v in stored]


@router.get("/{site_id}/policy/versions", response_model=list[StoredVersionOut], responses=errors(404),
            summary="Every version: who changed what, when")
async def policy_versions(site_id: str, user: User = Depends(MANAGER),
                          ctx: ApiContext = Depends(context)) -> list[StoredVersionOut]:
    site = site_in_scope(ctx, user, site_id)
    stored = await ctx.store.policies(site_id)
    return _stored_out(site_id, _with_site_verdicts(stored, policy_state(stored, site)))


@router.get("/{site_id}/policy/versions/{version}", response_model=StoredVersionOut, responses=errors(404))
async def policy_version(site_id: str, version: int, user: User = Depends(MANAGER),
                         ctx: ApiContext = Depends(context)) -> StoredVersionOut:
    listed = await policy_versions(site_id, user, ctx)
    found = next((v for v in listed if v.version == version), None)
    if found is None:
        raise not_found(f"policy version {version}")
    return found


@router.post("/{site_id}/policy", response_model=PolicyVersionOut, status_code=201,
             responses=errors(404, 409, 503, e409="another version was stored since `base_version`, or at the "
                                                  "same moment: reload the policy and try again"),
             summary="Put a new policy version in force (the service re-optimises at once)")
async def set_policy(site_id: str, change: PolicyChange, user: User = Depends(MANAGER),
                     ctx: ApiContext = Depends(context)) -> PolicyVersionOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    now = ctx.clock()
    _refuse(("body", "policy"), submission_problems(change.policy, runtime.site, now))
    previous = (await current_state(ctx.store, runtime.site)).in_force
    try:
        version = await ctx.store.add_policy(site_id, change.policy, user.name, change.comment, now,
                                             change.base_version)
    except Conflict as error:
        raise HTTPException(409, f"another policy version of {site_id!r} was stored since version "
                                 f"{change.base_version if change.base_version is not None else 'read'}; "
                                 "reload it and try again") from error
    policy_replaced(runtime, now)
    await runtime.policy_changed(version)
    return _version_out(site_id, version, previous)


@router.post("/{site_id}/policy/preview", response_model=ScheduleOut,
             responses=errors(404, 503, e429="a preview of this site is running (one at a time): wait Retry-After "
                                             "seconds"),
             summary="The schedule a draft policy would give; nothing is written")
async def preview(site_id: str, draft: PolicyPreviewRequest, user: User = Depends(MANAGER),
                  ctx: ApiContext = Depends(context)) -> ScheduleOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    now = ctx.clock()
    _refuse(("body", "policy"), submission_problems(draft.policy, runtime.site, now))
    async with _solving(ctx, site_id):
        schedule = await runtime.preview(draft.policy)
    hidden = privacy.private_assets(runtime.site)
    return schedule_body(site_id, schedule, hidden, schedule_id=None, created_at=now, valid_until=None,
                         policy_version=None, asset_names=asset_names(runtime.site, hidden))


@router.post("/{site_id}/policy/what-if", response_model=WhatIfOut, responses=errors(404, 503),
             summary="The policy in force and a draft side by side on the same horizon; nothing is written")
async def what_if(site_id: str, draft: PolicyPreviewRequest, user: User = Depends(MANAGER),
                  ctx: ApiContext = Depends(context)) -> WhatIfOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    _refuse(("body", "policy"), submission_problems(draft.policy, runtime.site, ctx.clock()))
    current = (await current_state(ctx.store, runtime.site)).in_force
    in_force = current.policy if current else SitePolicy()
    # Both on the draft's horizon and step, so that their figures compare.
    same = in_force.model_copy(update={"horizon_hours": draft.policy.horizon_hours,
                                       "step_minutes": draft.policy.step_minutes})
    async with _solving(ctx, site_id):
        before, after = await asyncio.gather(runtime.preview(same), runtime.preview(draft.policy))
    steps = list(after.setpoints.index)
    return WhatIfOut(
        site_id=site_id, current_version=current.version if current else None,
        horizon_start=steps[0].to_pydatetime() if steps else None, horizon_hours=draft.policy.horizon_hours,
        current=figures(before, runtime.site.tz), proposed=figures(after, runtime.site.tz),
        changed=changed_fields(in_force, draft.policy),
    )


@contextlib.asynccontextmanager
async def _solving(ctx: ApiContext, site_id: str) -> AsyncIterator[None]:
    """Solves for previews, one at a time per site: 429 with Retry-After while one runs."""
    previews = ctx.previews
    if previews.busy(site_id):
        raise HTTPException(429, f"a preview of site {site_id!r} is running; one runs at a time",
                            headers={"Retry-After": str(previews.retry_after_s(site_id))})
    with previews.running(site_id):
        started = time.monotonic()
        yield
        previews.took(site_id, time.monotonic() - started)


@router.get("/{site_id}/kpis", response_model=KpisOut, responses=errors(404),
            summary="Energy, cost, CO2, peak, discomfort, self-consumption, forecast accuracy, plan adherence")
async def kpis(site_id: str, start: date | None = None, end: date | None = None, user: User = Depends(MANAGER),
               ctx: ApiContext = Depends(context)) -> KpisOut:
    site = site_in_scope(ctx, user, site_id)
    now = ctx.clock()
    start, end = period(start, end, Resolution.HOUR, ctx.settings, now.astimezone(site.tz).date())
    values = await site_kpis(ctx.historian, site, start, end, ctx.settings.carbon_kg_per_kwh,
                             ctx.runtimes.get(site_id), now, ctx.settings.minimum_aggregate_dwellings)
    return KpisOut(site_id=site_id, start=start, end=end, kpis=values)


@router.get("/{site_id}/thermal-models", response_model=list[ThermalModelOut], responses=errors(404, 503),
            summary="Each zone's thermal model: the site file's, the one identified from its measurements, "
                    "their errors on held-out days, and which one the plans use")
async def thermal_models(site_id: str, user: User = Depends(MANAGER),
                         ctx: ApiContext = Depends(context)) -> list[ThermalModelOut]:
    runtime = await runtime_in_scope(ctx, user, site_id)
    report = runtime.forecast_report()
    if report is None:
        raise HTTPException(503, f"site {site_id!r} does not forecast from its measurements in this service")
    zones = {adapter.id: adapter.asset for adapter in site_adapters(runtime.site)}
    out = []
    for zone_id, estimate in report.identified.items():
        if not isinstance(estimate, ThermalEstimate) or zone_id not in zones:
            continue
        found = estimate.identification
        file = site_file_estimate(zones[zone_id], "")
        out.append(ThermalModelOut(
            zone=zone_id, in_use="identified" if estimate.identified else "site_file", reason=estimate.reason,
            fitted_at=estimate.fitted_at, site_file=_parameters(file.model, file.internal_gain_occupied_kw,
                                                                file.internal_gain_idle_kw),
            identified=None if found is None else _parameters(found.model, found.internal_gain_occupied_kw,
                                                               found.internal_gain_idle_kw),
            training=None if found is None else _fit(found.training),
            held_out=None if found is None else _fit(found.held_out),
            site_file_held_out=None if found is None else _fit(found.site_file_held_out)))
    return out


def _parameters(model: ThermalModel, occupied_kw: float, idle_kw: float) -> ThermalParameters:
    return ThermalParameters(**model.model_dump(), internal_gain_occupied_kw=occupied_kw, internal_gain_idle_kw=idle_kw)


def _fit(error: FitError) -> ThermalFit:
    def finite(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return ThermalFit(one_step_rmse_k=finite(error.one_step_rmse_k), day_ahead_rmse_k=finite(error.multi_step_rmse_k),
                      samples=error.samples)


def _dr_state(event: DemandResponse | None, cancelled: bool, now: datetime) -> str:
    if event is None:
        return "rejected"
    if cancelled:
        return "cancelled"
    return "upcoming" if now < event.start else "in_progress" if now < event.end else "over"


def _dr_out(record: DemandResponseRecord, now: datetime) -> DemandResponseOut:
    return DemandResponseOut(site_id=record.site_id, event_id=record.event_id, event=record.event,
                             problem=record.problem, created_by=record.created_by,
                             created_at=record.created_at, cancelled_at=record.cancelled_at,
                             cancelled_by=record.cancelled_by, cancel_reason=record.cancel_reason,
                             state=_dr_state(record.event, record.cancelled_at is not None, now))


@router.get("/{site_id}/demand-response", response_model=list[DemandResponseOut], responses=errors(404),
            summary="Demand-response events; cancelled ones say who cancelled them, when and why")
async def demand_responses(site_id: str, user: User = Depends(MANAGER),
                           ctx: ApiContext = Depends(context)) -> list[DemandResponseOut]:
    site_in_scope(ctx, user, site_id)
    now = ctx.clock()
    return [_dr_out(r, now) for r in await ctx.store.demand_responses(site_id) if r.event is not None]


@router.post("/{site_id}/demand-response", response_model=DemandResponseOut, status_code=201,
             summary="Announce a demand-response event (the service re-optimises at once)",
             responses=errors(404, 409, 503, e409="an event with this id exists"))
async def add_demand_response(site_id: str, event: DemandResponse, user: User = Depends(MANAGER),
                              ctx: ApiContext = Depends(context)) -> DemandResponseOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    now = ctx.clock()
    _refuse(("body",), event_problems(event, now))
    if not await ctx.store.add_demand_response(site_id, event, user.name, now):
        raise HTTPException(409, f"site {site_id!r} already has a demand-response event {event.id!r}")
    await runtime.demand_response(event)
    return DemandResponseOut(site_id=site_id, event_id=event.id, event=event, created_by=user.name,
                             created_at=now, state=_dr_state(event, False, now))


@router.delete("/{site_id}/demand-response/{event_id}", response_model=DemandResponseOut,
               summary="Cancel a demand-response event: the service stops honouring it at once and re-plans",
               responses=errors(404, 409, 503, e409="the event is already cancelled or over"))
async def cancel_demand_response(
    site_id: str,
    event_id: str,
    reason: str = Query(..., min_length=1, max_length=500, description="why, kept with the event"),
    user: User = Depends(MANAGER),
    ctx: ApiContext = Depends(context),
) -> DemandResponseOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    now = ctx.clock()
    record = await ctx.store.demand_response(site_id, event_id)
    if record is None:
        raise not_found(f"demand-response event {event_id!r}")
    if record.cancelled_at is not None:
        raise HTTPException(409, f"event {event_id!r} was cancelled by {record.cancelled_by} at "
                                 f"{record.cancelled_at.isoformat()}")
    if record.ends_at is not None and record.ends_at <= now:
        raise HTTPException(409, f"event {event_id!r} is over")
    cancelled = await ctx.store.cancel_demand_response(site_id, event_id, user.name, reason, now)
    if cancelled is None:
        raise HTTPException(409, f"event {event_id!r} was cancelled at the same moment by someone else")
    log.info("%s: demand-response event %s cancelled by %s: %s", site_id, event_id, user.name, reason)
    await runtime.demand_response_cancelled(event_id)
    runtime.alarms.clear(AlarmKind.POLICY_INVALID, event_subject(event_id), now)
    return _dr_out(cancelled, now)
