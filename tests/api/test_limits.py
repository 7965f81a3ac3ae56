"""The rate limit is the token's whatever the scheme's spelling, and /metrics can be closed: a token, or a
listener of its own."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gridctl.api import API_PREFIX, ApiSettings
from gridctl.api.ratelimit import bearer_token, client_keys
from gridctl.clock import ManualClock
from gridctl.commands.run import METRICS_TOKEN_ENV, metrics_access
from gridctl.service.runner import ServiceHost, SiteOptions
from gridctl.service.web import MetricsAccess, build_app, metrics_app
from tests.api.conftest import make_api
from tests.api.support import NOW, SITE_DIR, copy_history


async def test_the_schemes_spelling_does_not_open_a_new_bucket(tmp_path, history_template, site) -> None:
    api, _app = await make_api(copy_history(history_template, tmp_path / "db.sqlite"), site,
                               ApiSettings(rate_per_second=0.01, rate_burst=3))
    try:
        token = api.tokens["resident"]
        codes = [(await api.client.get(f"{API_PREFIX}/me", headers={"Authorization": f"{scheme} {token}"})).status_code
                 for scheme in ("Bearer", "bearer", "BEARER", "bEaReR")]
        assert codes == [200, 200, 200, 429]
        # The same token sent with extra spaces is the same bucket too.
        assert (await api.client.get(f"{API_PREFIX}/me", headers={"Authorization": f"  Bearer   {token} "})
                ).status_code == 429
        assert (await api.client.get(f"{API_PREFIX}/me", headers=api.auth("operator"))).status_code == 200
    finally:
        await api.client.aclose()
        await api.ctx.store.db.close()
        await api.historian.close()


def test_bucket_keys() -> None:
    scope = {"client": ("10.0.0.7", 5000), "headers": [(b"authorization", b"bearer abc")]}
    same = {"client": ("10.0.0.7", 5001), "headers": [(b"authorization", b"Bearer  abc ")]}
    assert client_keys(scope) == client_keys(same)
    assert client_keys(scope)[0] == "10.0.0.7"
    basic = {"client": ("10.0.0.8", 1), "headers": [(b"authorization", b"Basic abc")]}
    assert client_keys(basic) == ("10.0.0.8", "a:10.0.0.8")
    assert bearer_token(b"Bearer") is None and bearer_token(b"Token abc") is None


@pytest.fixture
async def host(tmp_path: Path):
    host = ServiceHost([SiteOptions(site=SITE_DIR)], str(tmp_path / "gridctl.sqlite"), tmp_path / "spool",
                       clock=ManualClock(NOW))
    await host.open_history()
    host.metrics.writes.labels("zac-saint-sauveur", "written").inc()
    try:
        yield host
    finally:
        await host.historian.close()
        host.spool.close()


async def _get(app, path: str, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(path, headers=headers)


async def test_metrics_behind_a_token(host: ServiceHost) -> None:
    app = build_app(host, MetricsAccess(token="s3cret-metrics"))
    assert (await _get(app, "/metrics")).status_code == 401
    assert (await _get(app, "/metrics", "Bearer nope")).status_code == 401
    opened = await _get(app, "/metrics", "bearer s3cret-metrics")
    assert opened.status_code == 200 and b"gridctl_writes_total" in opened.content


async def test_metrics_on_a_listener_of_their_own(host: ServiceHost) -> None:
    app = build_app(host, MetricsAccess(listen=("127.0.0.1", 9464)))
    assert (await _get(app, "/metrics")).status_code == 404
    alone = metrics_app(host, None)
    assert (await _get(alone, "/metrics")).status_code == 200
    assert (await _get(alone, "/api/v1/openapi.json")).status_code == 404
    # Without options, /metrics stays where it was.
    assert (await _get(build_app(host), "/metrics")).status_code == 200


def test_metrics_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    token_file = tmp_path / "metrics.token"
    token_file.write_text("from-file\n")
    args = argparse.Namespace(metrics_listen="[::1]:9464", metrics_token_file=token_file)
    assert metrics_access(args) == MetricsAccess(token="from-file", listen=("::1", 9464))
    monkeypatch.setenv(METRICS_TOKEN_ENV, "from-env")
    assert metrics_access(argparse.Namespace(metrics_listen=None, metrics_token_file=None)).token == "from-env"
    with pytest.raises(SystemExit, match="HOST:PORT"):
        metrics_access(argparse.Namespace(metrics_listen="9464", metrics_token_file=None))
    token_file.write_text("")
    with pytest.raises(SystemExit, match="empty"):
        metrics_access(argparse.Namespace(metrics_listen=None, metrics_token_file=token_file))
