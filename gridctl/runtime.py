"""What the running service exposes about one site to the API and the web pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from drivers.base import DeviceHealth, Reading
from gridctl.alarms import AlarmBook
from gridctl.config.models import Site
from gridctl.dispatch.audit import AuditEntry
from gridctl.policy import DemandResponse, PolicyVersion, SitePolicy
from optimizer import Schedule

if TYPE_CHECKING:
    from gridctl.forecast.forecaster import ForecastReport


@dataclass(frozen=True)
class PlannedSchedule:
    """A schedule the service computed, with where it came from and how long it is valid."""

    schedule_id: str
    site_id: str
    created_at: datetime
    valid_until: datetime
    policy_version: int | None
    schedule: Schedule


class SiteRuntime(Protocol):
    """The live side of one site: readings, health, alarms, schedule, hands off, previews."""

    @property
    def site(self) -> Site: ...

    @property
    def alarms(self) -> AlarmBook: ...

    def latest(self) -> Mapping[str, Reading]:
        """The last reading of every polled point, by address."""
        ...

    def device_health(self) -> Mapping[str, DeviceHealth]: ...

    def current_schedule(self) -> PlannedSchedule | None: ...

    def forecast_report(self) -> ForecastReport | None:
        """How well the forecasts did and the zones' thermal models, when the site forecasts from its
        measurements (None otherwise)."""
        ...

    def hands_off_scopes(self) -> set[str]: ...

    async def hands_off(self, scope: str, actor: str, reason: str) -> list[AuditEntry]:
        """Stop commanding `site`, `device:<id>` or `point:<address>`; relinquish, staggered."""
        ...

    async def hands_on(self, scope: str, actor: str) -> None: ...

    async def preview(self, policy: SitePolicy) -> Schedule:
        """Run the optimiser for a draft policy on current forecasts; nothing is written."""
        ...

    async def policy_changed(self, version: PolicyVersion) -> None:
        """A new policy version is in force: re-optimise at once."""
        ...

    async def demand_response(self, event: DemandResponse) -> None:
        """A demand-response event was announced: re-optimise at once."""
        ...

    async def demand_response_cancelled(self, event_id: str) -> None:
        """A demand-response event was cancelled: stop honouring it now and re-optimise."""
        ...
