"""Sign-in for people: password, activation link, sign-out. The session travels in an HttpOnly cookie;
its CSRF token in a cookie the pages read and send back as a header."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from gridctl.api.auth import CSRF_COOKIE, SESSION_COOKIE, current_user, same_origin
from gridctl.api.context import ApiContext, context
from gridctl.api.models import ActivationRequest, LoginRequest, SessionOut
from gridctl.api.periods import field_error
from gridctl.api.responses import ErrorOut, errors
from gridctl.api.signin import LockedOut, PasswordRejected
from gridctl.api.store import Role, User, hash_token

router = APIRouter(prefix="/auth", tags=["sign-in"])

HOME = {Role.RESIDENT: "/ui/resident", Role.OPERATOR: "/ui/operator", Role.MANAGER: "/ui/manager",
        Role.ADMIN: "/ui/operator"}


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _check_origin(request: Request) -> None:
    # Signing in from another site's page (login CSRF) is refused like any cross-site change.
    if not same_origin(request):
        raise HTTPException(403, "sign in from this site's pages")


async def _open(response: Response, request: Request, ctx: ApiContext, user: User) -> SessionOut:
    session_id, csrf = await ctx.signin.open_session(user, ctx.wall_clock())
    secure = request.url.scheme == "https"
    age = int(ctx.settings.session_lifetime.total_seconds())
    response.set_cookie(SESSION_COOKIE, session_id, max_age=age, path="/", secure=secure, httponly=True,
                        samesite="strict")
    # Not HttpOnly: the pages read it to send it back in the X-CSRF-Token header.
    response.set_cookie(CSRF_COOKIE, csrf, max_age=age, path="/", secure=secure, httponly=False, samesite="strict")
    return SessionOut(name=user.name, role=user.role, home=HOME[user.role])


@router.post("/login", response_model=SessionOut, summary="Sign in with a user name and password",
             responses=errors(401, 403, 422, 429, e401="wrong user name or password",
                              e403="sent from another site's page",
                              e429="too many requests, or too many failed attempts: wait Retry-After seconds"))
async def login(body: LoginRequest, request: Request, response: Response,
                ctx: ApiContext = Depends(context)) -> SessionOut:
    _check_origin(request)
    try:
        user = await ctx.signin.authenticate(body.username, body.password, _address(request), ctx.wall_clock(),
                                             ctx.clock())
    except LockedOut as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(max(1, round(exc.retry_after_s)))}) from exc
    if user is None:
        raise HTTPException(401, "wrong user name or password")
    return await _open(response, request, ctx, user)


@router.post("/activate", response_model=SessionOut,
             summary="Set a password with a one-time activation link, and sign in",
             responses={**errors(403, 422, e403="sent from another site's page",
                                 e422="a field is invalid, or the password does not meet the rules"),
                        410: {"model": ErrorOut, "description": "the link is unknown, used or expired"}})
async def activate(body: ActivationRequest, request: Request, response: Response,
                   ctx: ApiContext = Depends(context)) -> SessionOut:
    _check_origin(request)
    try:
        user = await ctx.signin.activate(body.token, body.password, ctx.wall_clock(), ctx.clock())
    except PasswordRejected as exc:
        field_error("body", "password", str(exc))
    if user is None:
        raise HTTPException(410, "this activation link is unknown, already used or expired: ask for a new one")
    return await _open(response, request, ctx, user)


@router.get("/session", response_model=SessionOut, responses=errors(401),
            summary="Who is signed in (every role)")
async def session(user: User = Depends(current_user)) -> SessionOut:
    return SessionOut(name=user.name, role=user.role, home=HOME[user.role])


@router.post("/logout", status_code=204, summary="End the session (needs its CSRF token)",
             responses=errors(401, 403, e403="no CSRF token"))
async def logout(request: Request, response: Response, _user: User = Depends(current_user),
                 ctx: ApiContext = Depends(context)) -> None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        await ctx.signin.end_session(session_id)
        ctx.session_cache.discard(hash_token(session_id))
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
