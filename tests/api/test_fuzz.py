"""The API against its own OpenAPI schema, fuzzed by schemathesis with every check it has: no server error,
every status and content type documented, answers that match their schemas, schema-violating requests
refused, valid ones accepted, unsupported methods answered 405 with the right Allow header, and requests
without a token refused. The API runs in uvicorn on loopback, in a thread with its own event loop; the
schemathesis command line runs against it with a fixed seed and a bounded number of examples per operation.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from gridctl.api.store import Role
from tests.api.conftest import make_api
from tests.api.support import build_history, load

SEED = 20260320
EXAMPLES = 12
# Residents' operations take a resident's token; every other one an admin's with every site.
RESIDENT_PATHS = r"^/api/v1/me"
# Operations with rules a JSON schema cannot state, so a request valid for the schema may still be refused
# with 422: a period's end after its start and no longer than the resolution allows, dates in this
# century, events to come within the year, comfort bands with min below max, zones the site has.
CROSS_FIELD = [
    r"^/api/v1/me/dwellings/\{site_id\}/\{dwelling_id\}/(consumption|comparison)$",
    r"^/api/v1/open/sites/\{site_id\}(/buildings/\{building_id\})?/daily$",
    r"^/api/v1/sites/\{site_id\}/(kpis|audit|demand-response|policy)$",
]
# A preview or a what-if runs the optimiser (a second or two each): a few drafts, the body's boundary cases
# being those of POST /policy, which takes the same policy.
PREVIEW = r"/policy/(preview|what-if)$"
# An activation link that is not one (any drawn token) is gone: 410; a password too short, 422.
ACTIVATION = r"^/api/v1/auth/activate$"
PREVIEW_EXAMPLES = 6
# Identifiers drawn most of the time from the site's own, so that requests reach past "404 not found":
# a site with a running service, one served from history only (no live side: 503) and unknown ones.
IDENTIFIERS = {
    "site_id": ["zac-saint-sauveur", "small-site"],
    "dwelling_id": ["a-01", "b-07"],
    "building_id": ["block-a", "block-b", "gym"],
    "event_id": ["ecowatt-1"],
}


def schemathesis_config(resident_token: str, admin_token: str, *, seed: int = SEED, examples: int = EXAMPLES) -> str:
    def quoted(value: object) -> str:
        return json.dumps(value)

    lines = [
        f"seed = {seed}",
        # One worker: Python 3.11's parser is not safe to enter from several threads at once, which
        # hypothesis does when it describes a strategy.
        "workers = 1",
        "[generation]",
        f"max-examples = {examples}",
        "deterministic = true",
        'database = "none"',
        # A 503 is a documented answer (a site served from history only has no live side here): the only
        # 5xx the server may give.
        "[checks.not_a_server_error]",
        'expected-statuses = ["2xx", "3xx", "4xx", "503"]',
    ]
    for name, values in IDENTIFIERS.items():
        lines += [f"[dictionaries.{name}]", f"values = {quoted(values)}"]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.8 }}' for name in IDENTIFIERS]
    positive = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
    # Each operation takes the first group that matches it.
    groups = [(PREVIEW, admin_token, positive, ["phases.coverage.enabled = false",
                                                f"generation.max-examples = {PREVIEW_EXAMPLES}"]),
              (RESIDENT_PATHS, resident_token, None, [])]
    groups += [(pattern, admin_token, positive, []) for pattern in CROSS_FIELD]
    groups.append((ACTIVATION, admin_token, [*positive, "410"], []))
    for pattern, token, statuses, extra in groups:
        lines += ["[[operations]]", f"include-path-regex = {quoted(pattern)}",
                  f"headers = {{ Authorization = {quoted('Bearer ' + token)} }}", *extra]
        if statuses:
            lines += ["[operations.checks.positive_data_acceptance]", f"expected-statuses = {quoted(statuses)}"]
    everything_else = "|".join([PREVIEW, RESIDENT_PATHS, *CROSS_FIELD, ACTIVATION])
    lines += ["[[operations]]", f"exclude-path-regex = {quoted(everything_else)}",
              f"headers = {{ Authorization = {quoted('Bearer ' + admin_token)} }}"]
    return "\n".join(lines) + "\n"


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


def test_schemathesis_finds_nothing_with_every_check(fuzz_server: FuzzServer, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(fuzz_server.tokens["resident"], fuzz_server.tokens["root"]))
    command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "--no-color", "run",
               f"{fuzz_server.base_url}/api/v1/openapi.json", "--checks", "all",
               # Erasure ends the resident's token the rest of the run needs; tests/api/test_residents.py has it.
               "--exclude-path", "/api/v1/me/erasure", "--report", "junit", "--report-dir", str(tmp_path)]
    # Run where its cache (.schemathesis/) goes with the test's files, not into the checkout.
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    summary = re.search(r"Test cases:\s*\n\s*(\d+) generated", output)
    assert done.returncode == 0, output[-20000:]
    # Every operation was exercised, and not trivially.
    operations = re.search(r"Selected: (\d+)/(\d+)\s*\n\s*Tested: (\d+)", output)
    assert operations is not None and operations[1] == operations[3] and int(operations[3]) >= 35, output[-3000:]
    assert summary is not None and int(summary[1]) > 1000, output[-3000:]
    assert re.search(r"(\d+) generated, \1 passed", output), output[-3000:]
