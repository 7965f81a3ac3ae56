"""Turn the schedule's current step into write requests, or fall back to each asset's defaults.

Three sources of commands, in order of preference for each asset:
1. the valid schedule, when every measurement the asset depends on is fresh;
2. the asset's safe default (stale input, no valid schedule, optimiser failure);
3. the baseline: what a building runs today without gridctl (used by the `baseline` controller).
What each means for an asset is its adapter's (`gridctl.assets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from gridctl.assets import DispatchContext, site_adapters
from gridctl.assets.base import IsDark
from gridctl.config import models as m
from gridctl.dispatch import WriteRequest
from gridctl.policy import SitePolicy
from gridctl.runtime import PlannedSchedule
from gridctl.service.snapshot import Snapshot

__all__ = ["IsDark", "Plan", "baseline", "plan", "uncontrolled"]

STALE_INPUT = "stale input"


@dataclass(frozen=True)
class Plan:
    requests: list[WriteRequest]
    # Assets on their defaults this cycle, with why.
    fallbacks: dict[str, str]
    # Assets whose watched inputs are stale this cycle, with those inputs (whatever else is the matter).
    stale: dict[str, list[str]]


def plan(site: m.Site, planned: PlannedSchedule | None, snapshot: Snapshot, now: datetime,
         is_dark: IsDark, import_limit_kw: float | None = None, correct: bool = True,
         policy: SitePolicy | None = None) -> Plan:
    """Commands for this cycle from the schedule, with per-asset fallbacks. `import_limit_kw` is the
    import allowed now (policy, demand response), the site's connection limit when None."""
    requests: list[WriteRequest] = []
    fallbacks: dict[str, str] = {}
    stale_by_asset: dict[str, list[str]] = {}
    valid = planned is not None and planned.created_at <= now < planned.valid_until
    row = _row(planned.schedule.setpoints, now) if valid and planned is not None else None
    for adapter in site_adapters(site):
        stale = adapter.stale_points(snapshot)
        if stale:
            stale_by_asset[adapter.id] = stale
        if row is None:
            reason = "no valid schedule" if planned is None else "schedule expired"
        elif stale:
            reason = f"{STALE_INPUT} {', '.join(stale)}"
        else:
            assert planned is not None
            requests.extend(adapter.follow(DispatchContext(
                site, snapshot, now, is_dark, f"schedule {planned.schedule_id}", "gridctl:optimizer", planned, row,
                import_limit_kw or site.grid.import_limit_kw, correct, policy)))
            continue
        fallbacks[adapter.id] = reason
        requests.extend(adapter.safe_default(DispatchContext(site, snapshot, now, is_dark, reason,
                                                             "gridctl:fallback", policy=policy)))
    return Plan(requests, fallbacks, stale_by_asset)


def baseline(site: m.Site, snapshot: Snapshot, now: datetime, is_dark: IsDark) -> list[WriteRequest]:
    """What the site's equipment would be told without gridctl."""
    ctx = DispatchContext(site, snapshot, now, is_dark, "baseline", "baseline")
    return [request for adapter in site_adapters(site) for request in adapter.baseline(ctx)]


def uncontrolled(site: m.Site, snapshot: Snapshot, now: datetime, is_dark: IsDark) -> list[WriteRequest]:
    """What the site's equipment would do with no energy management at all (batteries idle)."""
    ctx = DispatchContext(site, snapshot, now, is_dark, "no control", "baseline")
    return [request for adapter in site_adapters(site) for request in adapter.uncontrolled(ctx)]


def _row(frame: pd.DataFrame, now: datetime) -> pd.Series | None:
    if frame.empty:
        return None
    position = int(frame.index.searchsorted(pd.Timestamp(now), side="right")) - 1
    if position < 0:
        return None
    return frame.iloc[position]
