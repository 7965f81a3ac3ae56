"""`gridctl demo` as the README runs it: simulated demonstrators, history, API and pages, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def test_demo_serves_the_demonstrators_and_stops_cleanly(tmp_path: Path) -> None:
    port, metrics_port = _free_port(), _free_port()
    env = {**os.environ, "GRIDCTL_DATA_DIR": str(tmp_path / "data"), "GRIDCTL_METRICS_TOKEN": "scrape-me"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gridctl.cli", "demo", "--port", str(port), "--backfill-days", "0.25",
         "--metrics-listen", f"127.0.0.1:{metrics_port}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        # Keep reading, so the demo never blocks on a full pipe while the test is busy.
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops."):
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=240)
        output = "".join(lines)
        assert "Ctrl-C stops." in output, output
        found = re.findall(r"^\s+(resident|operator|manager)\s.*\n\s+user (\S+)  password (\S+)\n\s+token (\S+)",
                           output, re.M)
        tokens = {role: token for role, _name, _password, token in found}
        assert set(tokens) == {"resident", "operator", "manager"}, output
        assert (tmp_path / "data" / "demo.sqlite3").is_file()
        assert _get(f"http://127.0.0.1:{port}/ui/resident")[0] == 200
        # A person signs in with the printed name and password.
        _role, name, password, _token = next(f for f in found if f[0] == "resident")
        login = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/auth/login", method="POST",
                                       data=json.dumps({"username": name, "password": password}).encode(),
                                       headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=30) as response:
            assert json.loads(response.read())["role"] == "resident"
            assert "gridctl_session=" in response.headers["Set-Cookie"]
        status, body = _get(f"http://127.0.0.1:{port}/api/v1/me", tokens["resident"])
        me = json.loads(body)
        assert status == 200 and me["dwellings"][0]["site_id"] == "zac-saint-sauveur"
        status, body = _get(f"http://127.0.0.1:{port}/api/v1/sites", tokens["operator"])
        assert {s["id"] for s in json.loads(body)} == {"zac-saint-sauveur", "zac-union", "zac-haute-deule"}
        # The service polls the simulated devices over their protocols: live values arrive. /metrics is on its
        # own listener, behind its token.
        assert f"metrics     http://127.0.0.1:{metrics_port}/metrics (bearer token required)" in output
        with pytest.raises(urllib.error.HTTPError, match="404"):
            _get(f"http://127.0.0.1:{port}/metrics")
        with pytest.raises(urllib.error.HTTPError, match="401"):
            _get(f"http://127.0.0.1:{metrics_port}/metrics")
        deadline = time.monotonic() + 60
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            status, body = _get(f"http://127.0.0.1:{port}/api/v1/sites/zac-union/devices", tokens["operator"])
            health = {d["device_id"]: d["state"] for d in json.loads(body)}
            if health.get("charger-01") == "ok":
                break
            time.sleep(2)
        assert health.get("charger-01") == "ok", health
        # /metrics counts devices by site, protocol and health: no series names a device, so the dwelling
        # meters appear in it only as counts.
        status, body = _get(f"http://127.0.0.1:{metrics_port}/metrics", "scrape-me")
        assert b'gridctl_devices{health="ok",protocol="modbus",site="zac-union"}' in body
        assert b'device="' not in body and b"meter-" not in body and b"charger-01" not in body
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = {p["address"]: p for p in json.loads(
                _get(f"http://127.0.0.1:{port}/api/v1/sites/zac-saint-sauveur/live", tokens["operator"])[1])}
            if live.get("dwellings:block-a/power", {}).get("value") is not None:
                break
            time.sleep(2)
        assert live["dwellings:block-a/power"]["value"] is not None, live.get("dwellings:block-a/power")
        assert not [a for a in live if a.startswith("meter-")]
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            # What the demo said while stopping (it reports what it still waits for) tells why.
            raise AssertionError("the demo did not stop within 90 s of Ctrl-C:\n" + "".join(lines[-60:])) from None
        reader.join(timeout=10)
        remainder = "".join(lines)
        assert process.returncode == 0, remainder
        assert "stopped: setpoints relinquished" in remainder
        assert "Traceback" not in remainder, remainder
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
