"""Residents: their own dwelling's consumption, consent, comparison, export and erasure."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from gridctl.api.advice import resident_advice
from gridctl.api.auth import RESIDENT, current_user
from gridctl.api.context import ApiContext, context, not_found
from gridctl.api.csvout import csv_response
from gridctl.api.energy import (
    NotEnoughDwellings,
    Resolution,
    compare_with_building,
    cost_of,
    dwelling_series,
    month_bounds,
)
from gridctl.api.models import (
    ComparisonDay,
    ComparisonOut,
    ConsentChange,
    ConsentState,
    Consumption,
    DwellingRef,
    ErasureOut,
    Me,
    MonthlySummary,
    ResidentAdvice,
)
from gridctl.api.periods import field_error, period
from gridctl.api.responses import csv_or_json, errors
from gridctl.api.store import Purpose, User
from gridctl.config.models import Site

router = APIRouter(prefix="/me", tags=["residents"])

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# Months from 2000-01 to 2099-12.
MONTH_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"


def _dwelling(ctx: ApiContext, user: User, site_id: str, dwelling_id: str) -> Site:
    """The site of one of the resident's dwellings; any other dwelling is 404, never its data."""
    site = ctx.site(site_id)
    if site is None or not user.has_dwelling(site_id, dwelling_id) or not any(
        d.id == dwelling_id for d in site.dwellings
    ):
        raise not_found(f"dwelling {site_id}/{dwelling_id}")
    return site


def _today(ctx: ApiContext, site: Site) -> date:
    return ctx.clock().astimezone(site.tz).date()


@router.get("", response_model=Me, summary="Who the token belongs to and what it covers (every role)")
async def me(user: User = Depends(current_user), ctx: ApiContext = Depends(context)) -> Me:
    refs = []
    for site_id, dwelling_id in user.dwellings():
        site = ctx.site(site_id)
        building = next((d.building for d in site.dwellings if d.id == dwelling_id), None) if site else None
        refs.append(DwellingRef(site_id=site_id, dwelling_id=dwelling_id, building=building))
    sites = [s.id for s in ctx.sites() if user.sees_site(s.id)]
    return Me(name=user.name, role=user.role, dwellings=refs, sites=sites)


@router.get(
    "/dwellings/{site_id}/{dwelling_id}/consumption",
    response_model=Consumption,
    summary="Energy used per 15 min, hour, day or month; the load curve (15 min, hour) needs consent",
    responses={**errors(403, 404, 422, e403="the token is not a resident's, or the load curve lacks the resident's "
                                            "consent"), **csv_or_json()},
)
async def consumption(
    site_id: str,
    dwelling_id: str,
    start: date | None = Query(None, description="first local day (default: 30 days before end)"),
    end: date | None = Query(None, description="day after the last (default: tomorrow)"),
    resolution: Resolution = Resolution.DAY,
    format: Literal["json", "csv"] = "json",
    user: User = Depends(RESIDENT),
    ctx: ApiContext = Depends(context),
) -> Consumption | Response:
    site = _dwelling(ctx, user, site_id, dwelling_id)
    if resolution.is_load_curve and not await ctx.store.has_consent(user, site_id, dwelling_id, Purpose.LOAD_CURVE):
        raise HTTPException(
            403, "the hourly and 15-minute load curve needs your consent for the purpose 'load_curve'"
        )
    start, end = period(start, end, resolution, ctx.settings, _today(ctx, site))
    buckets = await dwelling_series(ctx.historian, ctx.rollups, site, dwelling_id, start, end, resolution)
    if format == "csv":
        return csv_response(
            ["start", "energy_kwh"],
            ([b.start.isoformat(), b.energy_kwh] for b in buckets),
            f"{site_id}_{dwelling_id}_{resolution.value}_{start}_{end}.csv",
        )
    # The hottest endpoint: the body is built directly (in the Consumption shape) instead of through
    # pydantic models, which would cost more than the query itself for a year of days.
    body = {
        "site_id": site_id, "dwelling_id": dwelling_id, "resolution": resolution.value, "start": start.isoformat(),
        "end": end.isoformat(), "total_kwh": sum(b.energy_kwh for b in buckets if b.energy_kwh is not None),
        "buckets": [{"start": b.start.isoformat(), "energy_kwh": b.energy_kwh} for b in buckets],
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _month(month: str | None) -> date | None:
    if month is None:
        return None
    match = _MONTH.match(month)
    if not match or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 2099:
        field_error("query", "month", "must be a month as YYYY-MM between 2000-01 and 2099-12", month)
    return date(int(match[1]), int(match[2]), 1)


@router.get("/dwellings/{site_id}/{dwelling_id}/advice", response_model=ResidentAdvice, responses=errors(404, 422),
            summary="A month against the building in plain figures, the peak/off-peak split and its cost, the "
                    "range with data, and advice with what it would save a year")
async def advice(
    site_id: str,
    dwelling_id: str,
    month: str | None = Query(None, description="YYYY-MM (default: the month of the latest data)",
                              pattern=MONTH_PATTERN),
    user: User = Depends(RESIDENT),
    ctx: ApiContext = Depends(context),
) -> ResidentAdvice:
    site = _dwelling(ctx, user, site_id, dwelling_id)
    return await resident_advice(ctx.historian, ctx.rollups, site, dwelling_id, _today(ctx, site), _month(month),
                                 ctx.settings.minimum_aggregate_dwellings)


@router.get("/dwellings/{site_id}/{dwelling_id}/summary", response_model=MonthlySummary, responses=errors(404, 422),
            summary="A month's consumption and its cost under the dwelling's tariff")
async def monthly_summary(
    site_id: str,
    dwelling_id: str,
    month: str | None = Query(None, description="YYYY-MM (default: the current month)",
                              pattern=MONTH_PATTERN),
    user: User = Depends(RESIDENT),
    ctx: ApiContext = Depends(context),
) -> MonthlySummary:
    site = _dwelling(ctx, user, site_id, dwelling_id)
    first = _month(month) or _today(ctx, site).replace(day=1)
    start, end = month_bounds(first)
    # The cost needs hours (peak/off-peak); only the month's totals leave the server.
    hourly = await dwelling_series(ctx.historian, ctx.rollups, site, dwelling_id, start, end, Resolution.HOUR)
    daily = await dwelling_series(ctx.historian, ctx.rollups, site, dwelling_id, start, end, Resolution.DAY)
    cost = cost_of(site.tariff, hourly)
    return MonthlySummary(
        site_id=site_id, dwelling_id=dwelling_id, month=first.strftime("%Y-%m"),
        energy_kwh=sum(b.energy_kwh for b in hourly if b.energy_kwh is not None),
        peak_energy_kwh=cost.peak_energy_kwh, offpeak_energy_kwh=cost.offpeak_energy_kwh,
        cost_eur=None if cost.cost_eur is None else round(cost.cost_eur, 2),
        tariff=site.tariff.kind, days_with_data=sum(1 for b in daily if b.energy_kwh is not None),
        days_in_month=(end - start).days, note=cost.note,
    )


@router.get("/dwellings/{site_id}/{dwelling_id}/comparison", response_model=ComparisonOut,
            summary="Daily consumption against the median of the building's dwellings (at least 10)",
            responses=errors(404, 409, 422, e409="fewer than the minimum number of dwellings to compare with"))
async def comparison(
    site_id: str,
    dwelling_id: str,
    start: date | None = None,
    end: date | None = None,
    user: User = Depends(RESIDENT),
    ctx: ApiContext = Depends(context),
) -> ComparisonOut:
    site = _dwelling(ctx, user, site_id, dwelling_id)
    start, end = period(start, end, Resolution.DAY, ctx.settings, _today(ctx, site))
    if (end - start).days > 366:
        field_error("query", "end", "a comparison covers at most 366 days", str(end))
    try:
        result = await compare_with_building(
            ctx.historian, site, dwelling_id, start, end, ctx.settings.minimum_aggregate_dwellings
        )
    except NotEnoughDwellings as exc:
        raise HTTPException(409, str(exc)) from exc
    building = next(d.building for d in site.dwellings if d.id == dwelling_id)
    return ComparisonOut(
        site_id=site_id, dwelling_id=dwelling_id, building=building, start=start, end=end,
        energy_kwh=result.dwelling_kwh, median_kwh=result.median_kwh, dwellings_compared=result.dwellings,
        days=[ComparisonDay(day=d, energy_kwh=e, median_kwh=m) for d, e, m in result.days],
    )


@router.get("/dwellings/{site_id}/{dwelling_id}/consents", response_model=list[ConsentState], responses=errors(404),
            summary="The resident's decision for each purpose")
async def consents(site_id: str, dwelling_id: str, user: User = Depends(RESIDENT),
                   ctx: ApiContext = Depends(context)) -> list[ConsentState]:
    _dwelling(ctx, user, site_id, dwelling_id)
    state = await ctx.store.consents(user, site_id, dwelling_id)
    return [
        ConsentState(purpose=p, granted=bool(e and e.granted), decided_at=e.at if e else None)
        for p, e in state.items()
    ]


@router.put("/dwellings/{site_id}/{dwelling_id}/consents/{purpose}", response_model=ConsentState,
            responses=errors(404),
            summary="Grant or revoke consent for one purpose (recorded)")
async def set_consent(site_id: str, dwelling_id: str, purpose: Purpose, change: ConsentChange,
                      user: User = Depends(RESIDENT), ctx: ApiContext = Depends(context)) -> ConsentState:
    _dwelling(ctx, user, site_id, dwelling_id)
    event = await ctx.store.record_consent(user, site_id, dwelling_id, purpose, change.granted, ctx.clock())
    return ConsentState(purpose=purpose, granted=event.granted, decided_at=event.at)


@router.get("/export", summary="Everything gridctl holds about the resident, in one JSON file")
async def export_all(user: User = Depends(RESIDENT), ctx: ApiContext = Depends(context)) -> Response:
    history = await ctx.store.consent_history(user)
    dwellings = []
    for site_id, dwelling_id in user.dwellings():
        site = ctx.site(site_id)
        if site is None:
            continue
        today = _today(ctx, site)
        end = today + timedelta(days=1)
        daily = await dwelling_series(ctx.historian, ctx.rollups, site, dwelling_id, end - timedelta(days=3650), end,
                                      Resolution.DAY)
        entry: dict[str, object] = {
            "site_id": site_id,
            "dwelling_id": dwelling_id,
            "daily_kwh": [{"start": b.start.isoformat(), "energy_kwh": b.energy_kwh}
                          for b in daily if b.energy_kwh is not None],
        }
        if await ctx.store.has_consent(user, site_id, dwelling_id, Purpose.LOAD_CURVE):
            hourly = await dwelling_series(ctx.historian, ctx.rollups, site, dwelling_id,
                                           end - timedelta(days=366), end, Resolution.HOUR)
            entry["hourly_kwh"] = [{"start": b.start.isoformat(), "energy_kwh": b.energy_kwh}
                                   for b in hourly if b.energy_kwh is not None]
        dwellings.append(entry)
    document = {
        "exported_at": ctx.clock().isoformat(),
        "account": {"name": user.name, "role": str(user.role), "created_at": user.created_at.isoformat(),
                    "expires_at": user.expires_at.isoformat()},
        "consents": [{"site_id": e.site_id, "dwelling_id": e.dwelling_id, "purpose": str(e.purpose),
                      "granted": e.granted, "at": e.at.isoformat()} for e in history],
        "dwellings": dwellings,
    }
    return Response(
        json.dumps(document, indent=1),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="gridctl-my-data.json"'},
    )


@router.post("/erasure", response_model=ErasureOut, summary="Erase the resident's personal links; ends the token")
async def erasure(user: User = Depends(RESIDENT), ctx: ApiContext = Depends(context)) -> ErasureOut:
    history = await ctx.store.consent_history(user)
    await ctx.store.erase(user, ctx.clock())
    await ctx.signin.end_sessions(user)
    ctx.token_cache.forget(user.id)
    ctx.session_cache.forget(user.id)
    return ErasureOut(
        erased=True, dwellings_unlinked=len(user.scope), consents_removed=len(history),
        note="your account, consents and dwelling links are deleted; the meters' anonymous readings stay "
             "in the district's aggregates",
    )
