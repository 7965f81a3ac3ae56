"""Who makes a request: a bearer token (machines, scripts) or a person's session cookie (the pages), with
roles; scope checks live with the handlers (see context).

A session cookie is HttpOnly and SameSite=Strict; a state-changing request made with it must also carry
the session's CSRF token in `X-CSRF-Token` (the pages read it from the `gridctl_csrf` cookie) and, when
the browser sends one, an `Origin` of this server."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from gridctl.api.context import ApiContext, context
from gridctl.api.store import Role, User, hash_token

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
        cache = ctx.token_cache
        digest = hash_token(credentials.credentials)
        hit, user = cache.get(digest, now, ctx.settings.token_cache.total_seconds())
        if not hit:
            user = await ctx.store.user_for_token(credentials.credentials)
            cache.put(digest, user, now)
        if user is None or not user.active(now):
            raise _unauthorized("the token is unknown, expired or revoked")
        return user
    if session_id:
        session = await ctx.signin.session(session_id, ctx.wall_clock())
        if session is None or not session.user.active(now):
            raise _unauthorized("the session has ended: sign in again")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not same_origin(request) or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                raise HTTPException(403, f"a request changing something needs the session's {CSRF_HEADER} header "
                                         "and must come from this site's pages")
        return session.user
    raise _unauthorized("a bearer token or a signed-in session is required")


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
