"""Who makes a request: a bearer token (machines, scripts) or a person's session cookie (the pages), with
roles; scope checks live with the handlers (see context).

A session cookie is HttpOnly and SameSite=Strict; a state-changing request made with it must also carry
the session's CSRF token in `X-CSRF-Token` (the pages read it from the `gridctl_csrf` cookie) and, when
the browser sends one, an `Origin` of this server."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from gridctl.api.context import ApiContext, TokenCache, context
from gridctl.api.store import Role, User, hash_token
from gridctl.history import HistorianUnavailable

T = TypeVar("T")

SESSION_COOKIE = "gridctl_session"
CSRF_COOKIE = "gridctl_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="A token from `gridctl users add`")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                       description="The session of a person signed in on /ui/login; state-changing requests "
                                   f"also need the `{CSRF_HEADER}` header")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site's page."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin.partition("://")[2] == host


async def current_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                       session_id: str | None = Depends(_cookie), ctx: ApiContext = Depends(context)) -> User:
    now = ctx.clock()
    if credentials is not None:
        if credentials.scheme.lower() != "bearer":
            raise _unauthorized("a bearer token is required")
        user = await _remembered(ctx.token_cache, hash_token(credentials.credentials), now,
                                 ctx.settings.token_cache.total_seconds(), ctx.settings.outage_grace.total_seconds(),
                                 lambda: ctx.store.user_for_token(credentials.credentials))
        if user is None or not user.active(now):
            raise _unauthorized("the token is unknown, expired or revoked")
        return user
    if session_id:
        wall = ctx.wall_clock()
        # Sessions are read afresh every time (signing out, idle time); the cache serves during an outage only.
        session = await _remembered(ctx.session_cache, hash_token(session_id), wall, 0.0,
                                    ctx.settings.session_idle.total_seconds(),
                                    lambda: ctx.signin.session(session_id, wall))
        if session is None or not session.user.active(now):
            raise _unauthorized("the session has ended: sign in again")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not same_origin(request) or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                raise HTTPException(403, f"a request changing something needs the session's {CSRF_HEADER} header "
                                         "and must come from this site's pages")
        return session.user
    raise _unauthorized("a bearer token or a signed-in session is required")


async def _remembered(cache: TokenCache, digest: str, now: datetime, fresh_s: float, grace_s: float,
                      look_up: Callable[[], Awaitable[T]]) -> T | None:
    """What the database says of a digest, cached `fresh_s`; while the database is unreachable, the last
    answer of less than `grace_s` ago, else HistorianUnavailable (a 503)."""
    hit, value = cache.get(digest, now, fresh_s)
    if hit:
        return value
    try:
        value = await look_up()
    except HistorianUnavailable:
        hit, value = cache.get(digest, now, grace_s)
        if not hit:
            raise
        return value
    cache.put(digest, value, now)
    return value


def require(*roles: Role) -> Callable[..., Awaitable[User]]:
    """A dependency admitting only these roles (403 for the others)."""
    allowed = frozenset(roles)

    async def dependency(user: User = Depends(current_user)) -> User:
        if user.role not in allowed:
            raise HTTPException(403, f"this endpoint is for {', '.join(sorted(allowed))}; you are {user.role}")
        return user

    return dependency


RESIDENT = require(Role.RESIDENT)
STAFF_READ = require(Role.OPERATOR, Role.MANAGER, Role.ADMIN)
OPERATOR_WRITE = require(Role.OPERATOR, Role.ADMIN)
MANAGER = require(Role.MANAGER, Role.ADMIN)
