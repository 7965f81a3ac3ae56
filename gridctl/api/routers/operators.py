"""Building operators: sites, live values, device health, alarms, the write audit, the schedule and
hands off."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from gridctl.alarms import Alarm
from gridctl.api import privacy
from gridctl.api.auth import OPERATOR_WRITE, STAFF_READ
from gridctl.api.context import ApiContext, context, not_found, refreshed, runtime_in_scope, site_in_scope
from gridctl.api.csvout import csv_response
from gridctl.api.models import (
    SCOPE_PATTERN,
    AlarmAck,
    AlarmOut,
    AuditOut,
    DeviceHealthOut,
    HandsOffOut,
    HandsOffRequest,
    LivePoint,
    OverviewOut,
    PowerFlowOut,
    ScheduleOut,
    SiteSummary,
)
from gridctl.api.overview import power_flows
from gridctl.api.periods import field_error, instant_bounds
from gridctl.api.responses import csv_or_json, errors
from gridctl.api.store import AuditFilter, User
from gridctl.config.models import Site
from gridctl.dispatch.audit import Outcome
from optimizer import Schedule

router = APIRouter(prefix="/sites", tags=["operators"])


def _summary(ctx: ApiContext, site: Site) -> SiteSummary:
    runtime = ctx.runtimes.get(site.id)
    return SiteSummary(
        id=site.id, name=site.name, timezone=site.timezone, devices=len(site.devices),
        points=len(site.all_points()), dwellings=len(site.dwellings), buildings=[b.id for b in site.buildings],
        running=runtime is not None, active_alarms=None if runtime is None else len(runtime.alarms.active()),
        controlled_by=getattr(runtime, "controlled_by", None),
    )


@router.get("", response_model=list[SiteSummary], summary="The sites the token covers")
async def sites(user: User = Depends(STAFF_READ), ctx: ApiContext = Depends(context)) -> list[SiteSummary]:
    seen = [s for s in ctx.sites() if user.sees_site(s.id)]
    await asyncio.gather(*(refreshed(ctx.runtimes[s.id]) for s in seen if s.id in ctx.runtimes))
    return [_summary(ctx, s) for s in seen]


@router.get("/{site_id}", response_model=SiteSummary, responses=errors(404))
async def site(site_id: str, user: User = Depends(STAFF_READ), ctx: ApiContext = Depends(context)) -> SiteSummary:
    site = site_in_scope(ctx, user, site_id)
    if site_id in ctx.runtimes:
        await refreshed(ctx.runtimes[site_id])
    return _summary(ctx, site)


def _json_value(value: object) -> float | str | bool | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return float(value)
    return str(value)


@router.get("/{site_id}/live", response_model=list[LivePoint], responses=errors(404, 503),
            summary="Latest value of every polled point; dwellings only as building totals (`dwellings:<building>/…`)")
async def live(site_id: str, user: User = Depends(STAFF_READ), ctx: ApiContext = Depends(context)) -> list[LivePoint]:
    runtime = await runtime_in_scope(ctx, user, site_id)
    site = runtime.site
    now = ctx.clock()
    speed = ctx.clock_speed() or 1.0
    units = {address: point.unit for address, _d, point in site.all_points()}
    latest = runtime.latest()
    private = privacy.dwelling_devices(site)
    points = [
        LivePoint(address=address, value=_json_value(r.value), unit=units.get(address, ""), quality=str(r.quality),
                  ts=r.ts, age_s=round((now - r.ts).total_seconds(), 3),
                  age_wall_s=round((now - r.ts).total_seconds() / speed, 3), error=r.error)
        for address, r in sorted(latest.items()) if not privacy.is_private(site, address, private)
    ]
    for total in privacy.building_aggregates(site, latest, ctx.settings.minimum_aggregate_dwellings, now):
        age_s = (now - total.ts).total_seconds()
        points.append(LivePoint(address=total.address, value=total.value, unit=total.unit,
                                quality="good" if total.value is not None else "withheld", ts=total.ts,
                                age_s=round(age_s, 3), age_wall_s=round(age_s / speed, 3), error=None,
                                note=total.note))
    return points


@router.get("/{site_id}/devices", response_model=list[DeviceHealthOut], responses=errors(404, 503),
            summary="Health of every device")
async def devices(site_id: str, user: User = Depends(STAFF_READ),
                  ctx: ApiContext = Depends(context)) -> list[DeviceHealthOut]:
    runtime = await runtime_in_scope(ctx, user, site_id)
    protocols = {d.id: d.protocol for d in runtime.site.devices}
    private = privacy.dwelling_devices(runtime.site)
    return [
        DeviceHealthOut(device_id=h.device_id, protocol=protocols.get(h.device_id, ""), state=str(h.state),
                        last_success=h.last_success,
                        last_error=privacy.redacted_error(h.last_error) if h.device_id in private else h.last_error,
                        last_error_at=h.last_error_at, consecutive_failures=h.consecutive_failures)
        for _id, h in sorted(runtime.device_health().items())
    ]


def _alarm(a: Alarm, site: Site) -> AlarmOut:
    message = a.message
    if privacy.private_subject(site, a.subject):
        message = f"{a.kind} on a dwelling's device (details withheld)"
    return AlarmOut(
        kind=str(a.kind), subject=a.subject, message=message, severity=str(a.severity), raised_at=a.raised_at,
        cleared_at=a.cleared_at, acknowledged_by=a.acknowledged_by, acknowledged_at=a.acknowledged_at,
        active=a.active,
    )


@router.get("/{site_id}/alarms", response_model=list[AlarmOut], responses=errors(404, 503),
            summary="Active alarms, and cleared ones on request")
async def alarms(site_id: str, include_cleared: bool = False, user: User = Depends(STAFF_READ),
                 ctx: ApiContext = Depends(context)) -> list[AlarmOut]:
    runtime = await runtime_in_scope(ctx, user, site_id)
    book = runtime.alarms
    found = book.active() + (book.history() if include_cleared else [])
    return [_alarm(a, runtime.site) for a in found]


@router.post("/{site_id}/alarms/acknowledge", response_model=AlarmOut, responses=errors(404, 503),
             summary="Acknowledge an active alarm")
async def acknowledge(site_id: str, ack: AlarmAck, user: User = Depends(OPERATOR_WRITE),
                      ctx: ApiContext = Depends(context)) -> AlarmOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    book = runtime.alarms
    if not book.is_active(ack.kind, ack.subject):
        raise not_found(f"active alarm {ack.kind} on {ack.subject!r}")
    return _alarm(book.acknowledge(ack.kind, ack.subject, user.name, ctx.clock()), runtime.site)


@router.get("/{site_id}/audit", response_model=list[AuditOut], responses={**errors(404), **csv_or_json()},
            summary="The write audit log, newest first")
async def audit(
    site_id: str,
    device: str | None = Query(None, max_length=64),
    point: str | None = Query(None, max_length=200, description="a point address <device>/<point>"),
    actor: str | None = Query(None, max_length=200),
    outcome: Outcome | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = Query(200, ge=1, le=1000),
    format: Literal["json", "csv"] = "json",
    user: User = Depends(STAFF_READ),
    ctx: ApiContext = Depends(context),
) -> list[AuditOut] | Response:
    site = site_in_scope(ctx, user, site_id)
    instant_bounds(start, end)
    private = tuple(sorted(privacy.dwelling_devices(site)))
    entries = []
    if not any(privacy.is_private(site, wanted) for wanted in (device, point) if wanted):
        entries = await ctx.store.audit_entries(AuditFilter(site_id, device, point, actor, outcome, start, end, limit,
                                                            hidden_devices=private))
    rows = [
        AuditOut(ts=e.ts, address=e.address, actor=e.actor, reason=e.reason, outcome=str(e.outcome),
                 old_value=e.old_value, requested_value=e.requested_value, written_value=e.written_value,
                 read_back=e.read_back, priority=e.priority, lease_until=e.lease_until, schedule_id=e.schedule_id,
                 policy_version=e.policy_version, error=e.error, clamped=e.clamped, ramped=e.ramped, unit=e.unit,
                 instance_id=e.instance_id, epoch=e.epoch)
        for e in entries
    ]
    if format == "csv":
        header = list(AuditOut.model_fields)
        return csv_response(header, ([getattr(r, h) for h in header] for r in rows), f"{site_id}_audit.csv")
    return rows


def asset_names(site: Site, hidden: set[str] = frozenset()) -> dict[str, str]:  # type: ignore[assignment]
    names = {"site": site.name}
    for asset in site.assets:
        if asset.id in hidden:
            continue
        names[asset.id] = asset.name or asset.id
        for charger in getattr(asset, "chargers", ()):
            names[charger.id] = getattr(charger, "name", None) or charger.id
    return names


def schedule_body(site_id: str, schedule: Schedule, hidden_assets: set[str] = frozenset(),  # type: ignore[assignment]
                  **meta: object) -> ScheduleOut:
    """A schedule's series and violations, without those of `hidden_assets` (a dwelling's own)."""
    frame = schedule.setpoints
    summary = schedule.summary()
    series = {
        str(column): [None if not math.isfinite(float(v)) else float(v) for v in frame[column]]
        for column in frame.columns
        if frame[column].dtype.kind in "fiub" and str(column).partition(".")[0] not in hidden_assets
    }
    violations = [v for v in summary["violations"] if v.get("asset_id") not in hidden_assets]
    return ScheduleOut(
        site_id=site_id, status=schedule.status,
        objective_eur=summary["objective_eur"] if schedule.has_solution else None,
        objective=summary["objective"], violations=violations,
        steps=[ts.to_pydatetime() if hasattr(ts, "to_pydatetime") else ts for ts in frame.index],
        series=series, **meta,  # type: ignore[arg-type]
    )


@router.get("/{site_id}/schedule", response_model=ScheduleOut, responses=errors(404, 503),
            summary="The schedule in force")
async def current_schedule(site_id: str, user: User = Depends(STAFF_READ),
                           ctx: ApiContext = Depends(context)) -> ScheduleOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    planned = runtime.current_schedule()
    if planned is None:
        raise not_found(f"schedule of site {site_id!r}")
    hidden = privacy.private_assets(runtime.site)
    return schedule_body(site_id, planned.schedule, hidden, schedule_id=planned.schedule_id,
                         created_at=planned.created_at, valid_until=planned.valid_until,
                         policy_version=planned.policy_version, asset_names=asset_names(runtime.site, hidden))


@router.get("/{site_id}/hands-off", response_model=HandsOffOut, responses=errors(404, 503),
            summary="Scopes gridctl is not commanding")
async def hands_off_scopes(site_id: str, user: User = Depends(STAFF_READ),
                           ctx: ApiContext = Depends(context)) -> HandsOffOut:
    return HandsOffOut(scopes=sorted((await runtime_in_scope(ctx, user, site_id)).hands_off_scopes()))


def _scope(site: Site, scope: str) -> str:
    """Check a hands-off scope names something of this site."""
    if scope == "site":
        return scope
    kind, _, target = scope.partition(":")
    if kind == "device" and any(d.id == target for d in site.devices):
        return scope
    if kind == "point":
        try:
            site.point(target)
            return scope
        except KeyError:
            pass
    if kind not in ("device", "point"):
        field_error("body", "scope", "must be 'site', 'device:<id>' or 'point:<device>/<point>'", scope)
    raise not_found(f"{kind} {target!r}")


@router.post("/{site_id}/hands-off", response_model=HandsOffOut, responses=errors(404, 503),
             summary="Stop commanding the site, a device or a point (relinquished, audited)")
async def hands_off(site_id: str, request: HandsOffRequest, user: User = Depends(OPERATOR_WRITE),
                    ctx: ApiContext = Depends(context)) -> HandsOffOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    scope = _scope(runtime.site, request.scope)
    entries = await runtime.hands_off(scope, user.name, request.reason)
    return HandsOffOut(scopes=sorted(runtime.hands_off_scopes()), relinquished=[e.address for e in entries],
                       pending=_pending(runtime))


@router.delete("/{site_id}/hands-off", response_model=HandsOffOut, responses=errors(404, 503),
               summary="Let gridctl command a scope again")
async def hands_on(site_id: str, scope: str = Query(..., max_length=200, pattern=SCOPE_PATTERN),
                   user: User = Depends(OPERATOR_WRITE),
                   ctx: ApiContext = Depends(context)) -> HandsOffOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    scope = _scope(runtime.site, scope)
    if scope not in runtime.hands_off_scopes():
        raise HTTPException(404, f"{scope!r} is not hands off")
    await runtime.hands_on(scope, user.name)
    return HandsOffOut(scopes=sorted(runtime.hands_off_scopes()), pending=_pending(runtime))


def _pending(runtime: object) -> bool:
    """Asked on an instance that does not control the site, and not confirmed yet by the one that does."""
    pending = getattr(runtime, "hands_off_pending", None)
    return bool(pending()) if pending is not None else False


@router.get("/{site_id}/overview", response_model=OverviewOut, responses=errors(404, 503),
            summary="The site at a glance: power flows now, alarms, devices by health, hands off, schedule")
async def overview(site_id: str, user: User = Depends(STAFF_READ), ctx: ApiContext = Depends(context)) -> OverviewOut:
    runtime = await runtime_in_scope(ctx, user, site_id)
    now = ctx.clock()
    active = runtime.alarms.active()
    states: dict[str, int] = {}
    for health in runtime.device_health().values():
        states[str(health.state)] = states.get(str(health.state), 0) + 1
    planned = runtime.current_schedule()
    return OverviewOut(
        site_id=site_id, name=runtime.site.name, at=now,
        flows=[PowerFlowOut(kind=f.kind, power_kw=f.power_kw, points=f.points, missing=f.missing, latest=f.latest)
               for f in power_flows(runtime.site, privacy.without_private(runtime.site, runtime.latest()), now)],
        active_alarms=len(active), unacknowledged_alarms=sum(1 for a in active if a.acknowledged_by is None),
        critical_alarms=sum(1 for a in active if str(a.severity) == "critical"), devices_by_state=states,
        hands_off=sorted(runtime.hands_off_scopes()),
        schedule_id=planned.schedule_id if planned else None,
        schedule_valid_until=planned.valid_until if planned else None,
    )
