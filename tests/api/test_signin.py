"""People sign in with a password: argon2id hashes, an HttpOnly SameSite=Strict session cookie, a CSRF
token on every change, back-off after failed attempts, one-time activation links, sign-out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gridctl.api.signin import Backoff, SignIn
from gridctl.api.store import Role
from gridctl.history.base import utc_now
from tests.api.conftest import Api

PASSWORD = "Lille-2026-rue-Saint-Sauveur"


async def _with_password(api: Api, name: str) -> None:
    user = await api.ctx.store.user(name)
    await api.ctx.signin.set_password(user, PASSWORD, utc_now())


async def _login(api: Api, name: str, password: str = PASSWORD, **headers: str):
    return await api.client.post("/api/v1/auth/login", json={"username": name, "password": password},
                                 headers=headers)


async def test_a_person_signs_in_and_the_session_cookie_is_locked_down(api: Api) -> None:
    await _with_password(api, "resident")
    response = await _login(api, "resident")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "resident", "role": "resident", "home": "/ui/resident"}
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("gridctl_session="))
    csrf = next(c for c in cookies if c.startswith("gridctl_csrf="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    # Over plain HTTP (loopback here) the cookie cannot be Secure; over TLS it is (next test).
    assert "Secure" not in session
    assert "HttpOnly" not in csrf
    stored = (await api.ctx.store.db.fetch("SELECT hash FROM api_passwords"))[0][0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    me = await api.client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["name"] == "resident"


async def test_the_cookie_is_secure_over_tls(api: Api) -> None:
    await _with_password(api, "operator")
    response = await api.client.post("https://gridctl.test/api/v1/auth/login",
                                     json={"username": "operator", "password": PASSWORD})
    assert response.status_code == 200
    assert all("Secure" in c for c in response.headers.get_list("set-cookie"))


async def test_changes_need_the_csrf_token_and_this_sites_origin(api: Api) -> None:
    await _with_password(api, "resident")
    assert (await _login(api, "resident")).status_code == 200
    csrf = api.client.cookies["gridctl_csrf"]
    path = "/api/v1/me/dwellings/zac-saint-sauveur/a-01/consents/load_curve"
    refused = await api.client.put(path, json={"granted": True})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    wrong = await api.client.put(path, json={"granted": True}, headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    elsewhere = await api.client.put(path, json={"granted": True},
                                     headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    accepted = await api.client.put(path, json={"granted": True},
                                    headers={"X-CSRF-Token": csrf, "Origin": "http://gridctl.test"})
    assert accepted.status_code == 200 and accepted.json()["granted"] is True
    # Reading needs no CSRF token.
    assert (await api.client.get(path.rsplit("/", 1)[0])).status_code == 200


async def test_bearer_tokens_still_work_without_csrf(api: Api) -> None:
    response = await api.client.put("/api/v1/me/dwellings/zac-saint-sauveur/a-01/consents/load_curve",
                                    json={"granted": True}, headers=api.auth("resident"))
    assert response.status_code == 200


async def test_a_wrong_password_or_name_says_the_same(api: Api) -> None:
    await _with_password(api, "manager")
    wrong = await _login(api, "manager", "not-the-password-at-all")
    unknown = await _login(api, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "gridctl_session" not in api.client.cookies
    # A user without a password (a machine's token only) cannot sign in either.
    assert (await _login(api, "operator", PASSWORD)).status_code == 401


async def test_failed_attempts_back_off_and_a_success_resets(api: Api) -> None:
    await _with_password(api, "manager")
    free = Backoff().free_failures
    for _ in range(free):
        assert (await _login(api, "manager", "wrong-password-123")).status_code == 401
    locked = await _login(api, "manager")
    assert locked.status_code == 429
    assert 25 <= int(locked.headers["Retry-After"]) <= 30
    # Past the wait the right password opens, and the count starts again.
    signin: SignIn = api.ctx.signin
    later = utc_now() + timedelta(seconds=31)
    assert await signin.authenticate("manager", PASSWORD, "127.0.0.1", later, api.clock.now()) is not None
    assert await signin.retry_after("manager", "127.0.0.1", later) == 0
    # Each failure past the free ones doubles the wait, up to the longest.
    backoff = Backoff()
    assert backoff.wait(free + 1, free, later, later) == 60
    assert backoff.wait(free + 20, free, later, later) == backoff.longest.total_seconds()


async def test_sign_out_ends_the_session(api: Api) -> None:
    await _with_password(api, "operator")
    assert (await _login(api, "operator")).status_code == 200
    session = api.client.cookies["gridctl_session"]
    csrf = api.client.cookies["gridctl_csrf"]
    assert (await api.client.post("/api/v1/auth/logout")).status_code == 403
    out = await api.client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    # The old cookie no longer opens anything, even if a browser kept it.
    api.client.cookies.set("gridctl_session", session)
    again = await api.client.get("/api/v1/sites")
    assert again.status_code == 401


async def test_idle_sessions_end(api: Api) -> None:
    await _with_password(api, "operator")
    assert (await _login(api, "operator")).status_code == 200
    session_id = api.client.cookies["gridctl_session"]
    signin: SignIn = api.ctx.signin
    assert await signin.session(session_id, utc_now()) is not None
    assert await signin.session(session_id, utc_now() + api.ctx.settings.session_idle) is None
    assert (await api.client.get("/api/v1/sites")).status_code == 401


async def test_an_activation_link_sets_the_password_once(api: Api) -> None:
    user = await api.ctx.store.user("manager")
    token = await api.ctx.signin.new_activation(user, utc_now())
    short = await api.client.post("/api/v1/auth/activate", json={"token": token, "password": "short"})
    assert short.status_code == 422 and "12 characters" in short.json()["message"]
    assert short.json()["message"].startswith("body.password")
    done = await api.client.post("/api/v1/auth/activate", json={"token": token, "password": PASSWORD})
    assert done.status_code == 200 and done.json()["role"] == "manager"
    assert "gridctl_session" in api.client.cookies
    api.client.cookies.clear()
    reused = await api.client.post("/api/v1/auth/activate", json={"token": token, "password": PASSWORD + "!"})
    assert reused.status_code == 410
    assert (await _login(api, "manager")).status_code == 200


async def test_a_password_change_and_an_erasure_end_sessions(api: Api) -> None:
    await _with_password(api, "resident")
    assert (await _login(api, "resident")).status_code == 200
    csrf = api.client.cookies["gridctl_csrf"]
    erased = await api.client.post("/api/v1/me/erasure", headers={"X-CSRF-Token": csrf})
    assert erased.status_code == 200
    assert (await api.client.get("/api/v1/me")).status_code == 401
    assert (await _login(api, "resident")).status_code == 401


@pytest.mark.parametrize("page", ["login", "activate", "resident", "operator", "manager"])
async def test_pages_are_served_with_security_headers(api: Api, page: str) -> None:
    response = await api.client.get(f"/ui/{page}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    root = await api.client.get("/")
    assert root.status_code in (302, 307) and root.headers["location"] == "/ui/login"


async def test_a_manager_signs_in_to_the_managers_home(api: Api) -> None:
    await api.user("energy.manager@lille.fr", Role.MANAGER, ["zac-saint-sauveur"])
    await _with_password(api, "energy.manager@lille.fr")
    response = await _login(api, "energy.manager@lille.fr")
    assert response.json()["home"] == "/ui/manager"
