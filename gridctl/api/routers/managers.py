"""Energy managers: versioned policies, schedule previews, KPIs and demand-response events."""

from __future__ import annotations

import asyncio
from datetime import date

from fastapi import APIRouter, Depends, HTTPException

from gridctl.api.auth import MANAGER
from gridctl.api.context import ApiContext, context, not_found, runtime_in_scope, site_in_scope
from gridctl.api.energy import Resolution
from gridctl.api.kpis import site_kpis
from gridctl.api.models import (
    DemandResponseOut,
    KpisOut,
    PolicyChange,
    PolicyPreviewRequest,
    PolicyVersionOut,
    ScheduleOut,
    SiteValuesOut,
    WhatIfOut,
    ZoneValues,
)
from gridctl.api.periods import period
from gridctl.api.routers.operators import asset_names, schedule_body
from gridctl.api.store import DemandResponseRecord, User
from gridctl.api.whatif import figures
from gridctl.assets import site_adapters
from gridctl.config.models import TimeWindow
from gridctl.policy import DemandResponse, PolicyVersion, SitePolicy

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


def _version_out(site_id: str, version: PolicyVersion | None, previous: PolicyVersion | None) -> PolicyVersionOut:
    if version is None:
        return PolicyVersionOut(site_id=site_id, version=None, author=None, comment="site defaults",
                                created_at=None, policy=SitePolicy(), changed=[])
    return PolicyVersionOut(
        site_id=site_id, version=version.version, author=version.author, comment=version.comment,
        created_at=version.created_at, policy=version.policy,
        changed=changed_fields(previous.policy if previous else None, version.policy),
    )


@router.get("/{site_id}/policy", response_model=PolicyVersionOut, summary="The policy in force")
async def current_policy(site_id: str, user: User = Depends(MANAGER),
                         ctx: ApiContext = Depends(context)) -> PolicyVersionOut:
    site_in_scope(ctx, user, site_id)
    current = await ctx.store.policy(site_id)
    previous = await ctx.store.policy(site_id, current.version - 1) if current and current.version > 1 else None
    return _version_out(site_id, current, previous)


def _window(w: TimeWindow) -> str:
    return f"{w.start:%H:%M}-{w.end:%H:%M}"


@router.get("/{site_id}/policy/site-values", response_model=SiteValuesOut,
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


@router.get("/{site_id}/policy/versions", response_model=list[PolicyVersionOut],
            summary="Every version: who changed what, when")
async def policy_versions(site_id: str, user: User = Depends(MANAGER),
                          ctx: ApiContext = Depends(context)) -> list[PolicyVersionOut]:
    site_in_scope(ctx, user, site_id)
    versions = await ctx.store.policies(site_id)
    return [_version_out(site_id, v, versions[i - 1] if i else None) for i, v in enumerate(versions)]


@router.get("/{site_id}/policy/versions/{version}", response_model=PolicyVersionOut)
async def policy_version(site_id: str, version: int, user: User = Depends(MANAGER),
                         ctx: ApiContext = Depends(context)) -> PolicyVersionOut:
    site_in_scope(ctx, user, site_id)
    found = await ctx.store.policy(site_id, version) if 1 <= version < 2**31 else None
    if found is None:
        raise not_found(f"policy version {version}")
    previous = await ctx.store.policy(site_id, version - 1) if version > 1 else None
    return _version_out(site_id, found, previous)


@router.post("/{site_id}/policy", response_model=PolicyVersionOut, status_code=201,
             summary="Put a new policy version in force (the service re-optimises at once)")
async def set_policy(site_id: str, change: PolicyChange, user: User = Depends(MANAGER),
                     ctx: ApiContext = Depends(context)) -> PolicyVersionOut:
    runtime = runtime_in_scope(ctx, user, site_id)
    previous = await ctx.store.policy(site_id)
    version = await ctx.store.add_policy(site_id, change.policy, user.name, change.comment, ctx.clock())
    await runtime.policy_changed(version)
    return _version_out(site_id, version, previous)


@router.post("/{site_id}/policy/preview", response_model=ScheduleOut,
             summary="The schedule a draft policy would give; nothing is written")
async def preview(site_id: str, draft: PolicyPreviewRequest, user: User = Depends(MANAGER),
                  ctx: ApiContext = Depends(context)) -> ScheduleOut:
    runtime = runtime_in_scope(ctx, user, site_id)
    schedule = await runtime.preview(draft.policy)
    return schedule_body(site_id, schedule, schedule_id=None, created_at=ctx.clock(), valid_until=None,
                         policy_version=None, asset_names=asset_names(runtime.site))


@router.post("/{site_id}/policy/what-if", response_model=WhatIfOut,
             summary="The policy in force and a draft side by side on the same horizon; nothing is written",
             responses={503: {"description": "the site is not running in this service"}})
async def what_if(site_id: str, draft: PolicyPreviewRequest, user: User = Depends(MANAGER),
                  ctx: ApiContext = Depends(context)) -> WhatIfOut:
    runtime = runtime_in_scope(ctx, user, site_id)
    current = await ctx.store.policy(site_id)
    in_force = current.policy if current else SitePolicy()
    # Both on the draft's horizon and step, so that their figures compare.
    same = in_force.model_copy(update={"horizon_hours": draft.policy.horizon_hours,
                                       "step_minutes": draft.policy.step_minutes})
    before, after = await asyncio.gather(runtime.preview(same), runtime.preview(draft.policy))
    steps = list(after.setpoints.index)
    return WhatIfOut(
        site_id=site_id, current_version=current.version if current else None,
        horizon_start=steps[0].to_pydatetime() if steps else None, horizon_hours=draft.policy.horizon_hours,
        current=figures(before, runtime.site.tz), proposed=figures(after, runtime.site.tz),
        changed=changed_fields(in_force, draft.policy),
    )


@router.get("/{site_id}/kpis", response_model=KpisOut,
            summary="Energy, cost, CO2, peak, discomfort, self-consumption, forecast accuracy, plan adherence")
async def kpis(site_id: str, start: date | None = None, end: date | None = None, user: User = Depends(MANAGER),
               ctx: ApiContext = Depends(context)) -> KpisOut:
    site = site_in_scope(ctx, user, site_id)
    now = ctx.clock()
    start, end = period(start, end, Resolution.HOUR, ctx.settings, now.astimezone(site.tz).date())
    values = await site_kpis(ctx.historian, site, start, end, ctx.settings.carbon_kg_per_kwh,
                             ctx.runtimes.get(site_id), now)
    return KpisOut(site_id=site_id, start=start, end=end, kpis=values)


def _dr_out(record: DemandResponseRecord) -> DemandResponseOut:
    return DemandResponseOut(site_id=record.site_id, event=record.event, created_by=record.created_by,
                             created_at=record.created_at)


@router.get("/{site_id}/demand-response", response_model=list[DemandResponseOut])
async def demand_responses(site_id: str, user: User = Depends(MANAGER),
                           ctx: ApiContext = Depends(context)) -> list[DemandResponseOut]:
    site_in_scope(ctx, user, site_id)
    return [_dr_out(r) for r in await ctx.store.demand_responses(site_id)]


@router.post("/{site_id}/demand-response", response_model=DemandResponseOut, status_code=201,
             summary="Announce a demand-response event (the service re-optimises at once)",
             responses={409: {"description": "an event with this id exists"}})
async def add_demand_response(site_id: str, event: DemandResponse, user: User = Depends(MANAGER),
                              ctx: ApiContext = Depends(context)) -> DemandResponseOut:
    runtime = runtime_in_scope(ctx, user, site_id)
    now = ctx.clock()
    if not await ctx.store.add_demand_response(site_id, event, user.name, now):
        raise HTTPException(409, f"site {site_id!r} already has a demand-response event {event.id!r}")
    await runtime.demand_response(event)
    return DemandResponseOut(site_id=site_id, event=event, created_by=user.name, created_at=now)
