"""Bearer-token authentication with roles; scope checks live with the handlers (see context)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gridctl.api.context import ApiContext, context
from gridctl.api.store import Role, User, hash_token

_bearer = HTTPBearer(auto_error=False, description="A token from `gridctl users add`")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


async def current_user(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                       ctx: ApiContext = Depends(context)) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("a bearer token is required")
    now = ctx.clock()
    cache = ctx.token_cache
    digest = hash_token(credentials.credentials)
    hit, user = cache.get(digest, now, ctx.settings.token_cache.total_seconds())
    if not hit:
        user = await ctx.store.user_for_token(credentials.credentials)
        cache.put(digest, user, now)
    if user is None or not user.active(now):
        raise _unauthorized("the token is unknown, expired or revoked")
    return user


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
