"""Open data: daily consumption per site and per building, never over fewer than the minimum number of
dwellings; no token needed."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from gridctl.api.context import ApiContext, context, not_found
from gridctl.api.csvout import csv_response
from gridctl.api.energy import NotEnoughDwellings, Resolution, building_dwellings, open_daily, publishable_building
from gridctl.api.models import OpenDaily, OpenDay, OpenSite
from gridctl.api.periods import period
from gridctl.api.responses import csv_or_json, errors
from gridctl.config.models import Site

router = APIRouter(prefix="/open", tags=["open data"])

_REFUSED = errors(404, 409, 422, e409="fewer than the minimum number of dwellings")


@router.get("/sites", response_model=list[OpenSite], summary="Sites and buildings with published aggregates")
async def open_sites(ctx: ApiContext = Depends(context)) -> list[OpenSite]:
    minimum = ctx.settings.minimum_aggregate_dwellings
    return [
        OpenSite(site_id=s.id, name=s.name, dwellings=len(s.dwellings),
                 buildings=[b.id for b in s.buildings if publishable_building(s, b.id, minimum)])
        for s in ctx.sites() if len(s.dwellings) >= minimum
    ]


async def _daily(ctx: ApiContext, site: Site, building_id: str | None, start: date | None, end: date | None,
                 format: str) -> OpenDaily | Response:
    minimum = ctx.settings.minimum_aggregate_dwellings
    start, end = period(start, end, Resolution.DAY, ctx.settings, ctx.clock().astimezone(site.tz).date())
    try:
        days = (await open_daily(ctx.historian, site, start, end, minimum))[building_id]
    except NotEnoughDwellings as exc:
        raise HTTPException(409, str(exc)) from exc
    if format == "csv":
        name = f"{site.id}_{building_id or 'site'}_daily_{start}_{end}.csv"
        return csv_response(["day", "energy_kwh", "dwellings_reporting"],
                            ([d.day.isoformat(), d.energy_kwh, d.dwellings] for d in days), name)
    dwellings = len(site.dwellings) if building_id is None else len(building_dwellings(site, building_id))
    return OpenDaily(site_id=site.id, building_id=building_id, dwellings=dwellings, minimum_dwellings=minimum,
                     days=[OpenDay(day=d.day, energy_kwh=d.energy_kwh, dwellings_reporting=d.dwellings, note=d.note)
                           for d in days])


@router.get("/sites/{site_id}/daily", response_model=OpenDaily, responses={**_REFUSED, **csv_or_json()},
            summary="Daily consumption of the site's dwellings together")
async def site_daily(site_id: str, start: date | None = None, end: date | None = None,
                     format: Literal["json", "csv"] = "json",
                     ctx: ApiContext = Depends(context)) -> OpenDaily | Response:
    site = ctx.site(site_id)
    if site is None:
        raise not_found(f"site {site_id!r}")
    return await _daily(ctx, site, None, start, end, format)


@router.get("/sites/{site_id}/buildings/{building_id}/daily", response_model=OpenDaily,
            responses={**_REFUSED, **csv_or_json()},
            summary="Daily consumption of a building's dwellings together")
async def building_daily(site_id: str, building_id: str, start: date | None = None, end: date | None = None,
                         format: Literal["json", "csv"] = "json",
                         ctx: ApiContext = Depends(context)) -> OpenDaily | Response:
    site = ctx.site(site_id)
    if site is None or not any(b.id == building_id for b in site.buildings):
        raise not_found(f"building {site_id}/{building_id}")
    minimum = ctx.settings.minimum_aggregate_dwellings
    if not publishable_building(site, building_id, minimum):
        members = len(building_dwellings(site, building_id))
        rest = len(site.dwellings) - members
        raise HTTPException(
            409, f"a building aggregate needs at least {minimum} dwellings in the building ({members}) and "
                 f"none or at least {minimum} in the rest of the site ({rest})"
        )
    return await _daily(ctx, site, building_id, start, end, format)
