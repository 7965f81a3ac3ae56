"""Putting stored policies and demand-response events back in force, and saying what was rejected."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

from gridctl.alarms import AlarmKind
from gridctl.api.store import ApiStore
from gridctl.config.models import Site
from gridctl.policy import PolicyState, PolicyVersion, policy_state
from gridctl.runtime import SiteRuntime

log = logging.getLogger(__name__)


def event_subject(event_id: str) -> str:
    """The subject of an alarm about one demand-response event."""
    return f"demand-response/{event_id}"


async def current_state(store: ApiStore, site: Site) -> PolicyState:
    return policy_state(await store.policies(site.id), site)


async def restore(store: ApiStore, runtime: SiteRuntime, now: datetime) -> PolicyState:
    """Put the newest stored policy that still validates back in force, with the events still to come.

    A stored version or event that no longer validates is never used: the site runs on the previous
    version (or its defaults) and an alarm names what was rejected and why, until a manager replaces it.
    """
    site = runtime.site
    state = await current_state(store, site)
    if state.in_force is not None:
        await runtime.policy_changed(state.in_force)
    if state.rejected:
        newest = state.rejected[-1]
        in_force = f"version {state.in_force.version}" if state.in_force else "the site's defaults"
        runtime.alarms.raise_alarm(
            AlarmKind.POLICY_INVALID, site.id,
            f"policy version {newest.version} no longer validates ({newest.problem}); {in_force} is in force "
            "until a manager stores a new version", now)
    for record in await store.demand_responses(site.id):
        if record.in_force(now):
            await runtime.demand_response(record.event)  # type: ignore[arg-type]
        elif record.problem is not None and record.cancelled_at is None and (
                record.ends_at is None or record.ends_at > now):
            runtime.alarms.raise_alarm(
                AlarmKind.POLICY_INVALID, event_subject(record.event_id),
                f"demand-response event {record.event_id!r} no longer validates ({record.problem}); it is not "
                "honoured", now)
    return state


def policy_replaced(runtime: SiteRuntime, now: datetime) -> None:
    """A valid version was stored: a rejected one no longer matters."""
    runtime.alarms.clear(AlarmKind.POLICY_INVALID, runtime.site.id, now)



async def follow(store: ApiStore, runtime: SiteRuntime, in_force: PolicyVersion | None,
                 events: Collection[str], now: datetime) -> None:
    """Bring a running site in line with what is stored, when it was changed through another gridctl
    instance: the newest valid policy version (`in_force` is the runtime's own), the demand-response events
    announced since (`events`: the ids the runtime honours) and those cancelled since."""
    state = await current_state(store, runtime.site)
    site_id = runtime.site.id
    if state.in_force is not None and (in_force is None or in_force.version != state.in_force.version):
        log.info("%s: policy version %d in force (by %s)", site_id, state.in_force.version, state.in_force.author)
        policy_replaced(runtime, now)
        await runtime.policy_changed(state.in_force)
    records = await store.demand_responses(site_id)
    for record in records:
        if record.in_force(now) and record.event_id not in events:
            log.info("%s: demand-response event %s honoured (announced by %s)", site_id, record.event_id,
                     record.created_by)
            await runtime.demand_response(record.event)  # type: ignore[arg-type]
        elif record.cancelled_at is not None and record.event_id in events:
            log.info("%s: demand-response event %s cancelled by %s", site_id, record.event_id, record.cancelled_by)
            await runtime.demand_response_cancelled(record.event_id)
            runtime.alarms.clear(AlarmKind.POLICY_INVALID, event_subject(record.event_id), now)
