"""What an API deployment may tune."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from gridctl.api.energy import Resolution


@dataclass(frozen=True)
class ApiSettings:
    # Décret 2020-196: no aggregate of fewer than ten dwellings is published.
    minimum_aggregate_dwellings: int = 10
    # Longest range one request may cover, per resolution.
    max_range: dict[Resolution, timedelta] = field(default_factory=lambda: {
        Resolution.QUARTER_HOUR: timedelta(days=31),
        Resolution.HOUR: timedelta(days=366),
        Resolution.DAY: timedelta(days=3660),
        Resolution.MONTH: timedelta(days=3660),
    })
    # Token bucket per bearer token (or per client address without one).
    rate_per_second: float = 20.0
    rate_burst: int = 60
    # And one per client address whatever the token, so that made-up tokens do not each get a fresh bucket.
    # Behind a reverse proxy, run uvicorn with --proxy-headers so that the address is the client's.
    address_rate_per_second: float = 200.0
    address_rate_burst: int = 400
    # How long a looked-up token stays cached in the worker; a revocation takes effect within this.
    token_cache: timedelta = timedelta(seconds=10)
    # While the database is unreachable, a token or session looked up within this long still works; any
    # other gets 503 (not 401: the database cannot say it is unknown).
    outage_grace: timedelta = timedelta(hours=24)
    # Grid carbon intensity used for the CO₂ KPI when no measured series is stored (RTE 2024 mean).
    carbon_kg_per_kwh: float = 0.0217
    max_audit_rows: int = 1000
    # People's sessions (the pages): ended after this long unused, and after this long in any case.
    session_idle: timedelta = timedelta(hours=2)
    session_lifetime: timedelta = timedelta(hours=12)
