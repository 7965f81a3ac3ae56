"""A fuzz run of the OpenAPI schema (schemathesis): no input, with a resident's or an admin's token, makes
the server fail (no 5xx). The API runs in uvicorn on loopback, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridctl.api.store import Role
from tests.api.conftest import make_api
from tests.api.support import build_history, load


@dataclass
class FuzzServer:
    base_url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    site = load()
    path: Path = tmp_path_factory.mktemp("fuzz") / "gridctl.sqlite"
    asyncio.run(build_history(path, site))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        api, app = await make_api(path, site)
        await api.user("root", Role.ADMIN, ["*"])
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        state["server"], state["tokens"] = server, api.tokens
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(3000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        ready.set()
        await task
        await api.client.aclose()
        await api.historian.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="fuzzed api", daemon=True)
    thread.start()
    assert ready.wait(60), "the API server did not start"
    try:
        yield FuzzServer(f"http://127.0.0.1:{sock.getsockname()[1]}", dict(state["tokens"]))  # type: ignore[arg-type]
    finally:
        state["server"].should_exit = True  # type: ignore[attr-defined]
        thread.join(30)
        sock.close()


def _operations() -> list:
    """The API's operations, read from its OpenAPI schema (building the app does no I/O)."""
    from gridctl.api import create_app
    from gridctl.history import SQLiteHistorian

    app = create_app(SQLiteHistorian(":memory:"), {}, database=":memory:")
    schema = schemathesis.openapi.from_dict(app.openapi())
    # Erasure takes no input and ends the token the rest of the run depends on; it is tested on its own.
    return [r.ok() for r in schema.get_all_operations() if r.ok().path != "/api/v1/me/erasure"]


OPERATIONS = _operations()
# Random ids only ever reach "404 not found": most cases use the ids of a real site, dwelling and building
# so that the fuzzed queries and bodies reach the handlers.
REAL_IDS = {"site_id": "zac-saint-sauveur", "dwelling_id": "a-01", "building_id": "block-a"}


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_input_makes_the_server_fail(operation, fuzz_server: FuzzServer) -> None:
    failures: list[str] = []

    def with_real_ids(drawn: tuple) -> object:
        case, real = drawn
        if real and case.path_parameters:
            case.path_parameters.update({k: v for k, v in REAL_IDS.items() if k in case.path_parameters})
        return case

    cases = st.tuples(operation.as_strategy(), st.sampled_from([True, True, True, False])).map(with_real_ids)

    @given(case=cases)
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        for who in ("resident", "root"):
            response = case.call(base_url=fuzz_server.base_url,
                                 headers={"Authorization": f"Bearer {fuzz_server.tokens[who]}"}, timeout=60)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r} as {who}: "
                                f"{response.status_code} {response.text[:300]}")
            assert response.status_code < 500, failures[-1]

    fuzz()
    assert not failures

