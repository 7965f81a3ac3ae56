"""Putting stored policies and demand-response events back in force, and saying what was rejected."""

from __future__ import annotations

from datetime import datetime

from gridctl.alarms import AlarmKind
from gridctl.api.store import ApiStore
from gridctl.config.models import Site
from gridctl.policy import PolicyState, policy_state
from gridctl.runtime import SiteRuntime


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

