"""What every request handler reaches: the historian, the API's store, the live sites, settings, time."""

from __future__ import annotations

import contextlib
import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request

from gridctl.api.energy import RollupReader
from gridctl.api.settings import ApiSettings
from gridctl.api.signin import SignIn
from gridctl.api.store import ApiStore, User
from gridctl.config.models import Site
from gridctl.history import Historian, HistorianUnavailable
from gridctl.history.base import utc_now
from gridctl.runtime import SiteRuntime


class TokenCache:
    """Recently seen tokens (or sessions), so a burst of requests does not look the same digest up every time,
    and so that those seen before a database outage keep working through it. Bounded: the least recently
    used entries go first."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._entries: OrderedDict[str, tuple[Any, datetime]] = OrderedDict()
        self.max_entries = max_entries

    def get(self, digest: str, now: datetime, ttl_s: float) -> tuple[bool, Any]:
        """(found, value) of an entry looked up in the database less than `ttl_s` ago."""
        entry = self._entries.get(digest)
        if entry is None or (now - entry[1]).total_seconds() > ttl_s:
            return False, None
        self._entries.move_to_end(digest)
        return True, entry[0]

    def put(self, digest: str, value: Any, now: datetime) -> None:
        self._entries[digest] = (value, now)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, digest: str) -> None:
        self._entries.pop(digest, None)

    def forget(self, user_id: int) -> None:
        for digest in [k for k, (v, _at) in self._entries.items() if _user_id(v) == user_id]:
            del self._entries[digest]


def _user_id(value: Any) -> int | None:
    user = getattr(value, "user", value)
    return getattr(user, "id", None)


class PreviewGate:
    """One preview solve per site at a time: a solve takes a core for seconds, and previews queue nowhere."""

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._last_s: dict[str, float] = {}

    def busy(self, site_id: str) -> bool:
        return site_id in self._running

    def retry_after_s(self, site_id: str) -> int:
        """Seconds until the running preview likely ends: as long as the last one took."""
        return max(1, math.ceil(self._last_s.get(site_id, 5.0)))

    @contextlib.contextmanager
    def running(self, site_id: str) -> Iterator[None]:
        # Checked and taken without an await in between: on one event loop nothing runs in between.
        if site_id in self._running:
            raise RuntimeError(f"a preview of {site_id} is already running")
        self._running.add(site_id)
        try:
            yield
        finally:
            self._running.discard(site_id)

    def took(self, site_id: str, seconds: float) -> None:
        self._last_s[site_id] = seconds


@dataclass
class ApiContext:
    historian: Historian
    store: ApiStore
    runtimes: Mapping[str, SiteRuntime]
    settings: ApiSettings
    clock: Callable[[], datetime]
    # Sites served without a live runtime (history and open data only).
    extra_sites: Mapping[str, Site] = field(default_factory=dict)
    token_cache: TokenCache = field(default_factory=lambda: TokenCache())
    # People's sessions as last read from the database, for a database outage.
    session_cache: TokenCache = field(default_factory=lambda: TokenCache(10_000))
    previews: PreviewGate = field(default_factory=lambda: PreviewGate())
    # Sessions and sign-in back-off run on the wall clock even when the service runs on simulated time.
    wall_clock: Callable[[], datetime] = utc_now
    # The service clock's seconds per wall-clock second (above 1 in an accelerated simulation).
    clock_speed: Callable[[], float] = lambda: 1.0

    @functools.cached_property
    def rollups(self) -> RollupReader:
        return RollupReader(self.store.db)

    @functools.cached_property
    def signin(self) -> SignIn:
        return SignIn(self.store, idle=self.settings.session_idle, lifetime=self.settings.session_lifetime)

    def site(self, site_id: str) -> Site | None:
        runtime = self.runtimes.get(site_id)
        if runtime is not None:
            return runtime.site
        return self.extra_sites.get(site_id)

    def sites(self) -> list[Site]:
        ids = sorted(set(self.runtimes) | set(self.extra_sites))
        return [s for s in (self.site(i) for i in ids) if s is not None]


async def context(request: Request) -> ApiContext:
    # A coroutine: FastAPI would run a plain function in its thread pool, a cost on every request.
    return request.app.state.context


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} not found")


def site_in_scope(ctx: ApiContext, user: User, site_id: str) -> Site:
    """The site, when it exists and the user's scope covers it; 404 otherwise, so that an id outside
    the scope is indistinguishable from one that does not exist."""
    site = ctx.site(site_id)
    if site is None or not user.sees_site(site_id):
        raise not_found(f"site {site_id!r}")
    return site


async def runtime_in_scope(ctx: ApiContext, user: User, site_id: str) -> SiteRuntime:
    site_in_scope(ctx, user, site_id)
    runtime = ctx.runtimes.get(site_id)
    if runtime is None:
        raise HTTPException(503, f"site {site_id!r} is not running in this service")
    await refreshed(runtime)
    return runtime


async def refreshed(runtime: SiteRuntime) -> None:
    """A site another gridctl instance controls: its live values as that instance last published them."""
    refresh = getattr(runtime, "refresh_published", None)
    if refresh is not None:
        try:
            await refresh()
        except HistorianUnavailable as error:
            raise HTTPException(503, f"the database does not answer ({error}); the site is controlled by "
                                     "another gridctl instance", headers={"Retry-After": "5"}) from error
