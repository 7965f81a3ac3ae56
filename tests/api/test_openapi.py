"""The OpenAPI schema documents every status an operation answers and its CSV form; unsupported methods are
answered 405 with every method the path has."""

from __future__ import annotations

import httpx
import pytest

from gridctl.api import API_PREFIX, create_app
from gridctl.history import SQLiteHistorian

LIVE_SIDE = {  # operations that need the site's running service (503 without it)
    ("get", "/sites/{site_id}/live"), ("get", "/sites/{site_id}/devices"), ("get", "/sites/{site_id}/alarms"),
    ("post", "/sites/{site_id}/alarms/acknowledge"), ("get", "/sites/{site_id}/schedule"),
    ("get", "/sites/{site_id}/hands-off"), ("post", "/sites/{site_id}/hands-off"),
    ("delete", "/sites/{site_id}/hands-off"), ("post", "/sites/{site_id}/policy"),
    ("post", "/sites/{site_id}/policy/preview"), ("post", "/sites/{site_id}/demand-response"),
    ("delete", "/sites/{site_id}/demand-response/{event_id}"),
}
CONFLICTS = {
    ("post", "/sites/{site_id}/policy"), ("post", "/sites/{site_id}/demand-response"),
    ("delete", "/sites/{site_id}/demand-response/{event_id}"),
    ("get", "/me/dwellings/{site_id}/{dwelling_id}/comparison"), ("get", "/open/sites/{site_id}/daily"),
    ("get", "/open/sites/{site_id}/buildings/{building_id}/daily"),
}
# Signing in takes no token.
NO_TOKEN = {"/auth/login", "/auth/activate"}
CSV = {("get", "/me/dwellings/{site_id}/{dwelling_id}/consumption"), ("get", "/sites/{site_id}/audit"),
       ("get", "/open/sites/{site_id}/daily"), ("get", "/open/sites/{site_id}/buildings/{building_id}/daily")}


@pytest.fixture(scope="module")
def app():
    return create_app(SQLiteHistorian(":memory:"), {}, database=":memory:")


def _operations(app) -> dict[tuple[str, str], dict]:
    schema = app.openapi()
    return {(method, path.removeprefix(API_PREFIX)): operation for path, operations in schema["paths"].items()
            for method, operation in operations.items()}


def test_every_status_is_documented(app) -> None:
    operations = _operations(app)
    assert LIVE_SIDE | CONFLICTS | CSV <= set(operations)
    for (method, path), operation in operations.items():
        documented = set(operation["responses"])
        expected = {"429"}
        if not path.startswith("/open/") and path not in NO_TOKEN:
            expected |= {"401"} if path == "/auth/session" else {"401", "403"}
        if "{" in path:
            expected |= {"404", "422"}
        if (method, path) in LIVE_SIDE:
            expected.add("503")
        if (method, path) in CONFLICTS:
            expected.add("409")
        assert expected <= documented, (method, path, sorted(expected - documented))
        assert "400" not in documented and "500" not in documented
        retry_after = operation["responses"]["429"].get("headers", {})
        assert "Retry-After" in retry_after, (method, path)
        success = next(operation["responses"][code] for code in ("200", "201", "204") if code in operation["responses"])
        assert ("text/csv" in success.get("content", {})) == ((method, path) in CSV), (method, path)


def test_error_bodies_are_the_ones_answered(app) -> None:
    schema = app.openapi()
    text = str(schema)
    assert "HTTPValidationError" not in text
    sample = schema["paths"][f"{API_PREFIX}/sites/{{site_id}}/policy"]["post"]["responses"]
    assert sample["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationErrorOut")
    assert sample["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


async def test_unsupported_methods_name_every_method_of_the_path(app) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.request("PATCH", f"{API_PREFIX}/sites/x/hands-off")
        assert response.status_code == 405 and response.headers["allow"] == "DELETE, GET, POST"
        response = await client.put(f"{API_PREFIX}/sites/x/policy")
        assert response.status_code == 405 and response.headers["allow"] == "GET, POST"


async def test_a_body_that_is_not_text_is_a_422(app) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(f"{API_PREFIX}/sites/x/policy", content=b"\xff\xfe\x00",
                                     headers={"Content-Type": "application/json"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body"] and response.json()["message"].startswith("body:")
