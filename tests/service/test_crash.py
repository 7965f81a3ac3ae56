"""`gridctl run` killed with SIGKILL against a simulated site, over the real protocols.

The journal's fault hook (GRIDCTL_JOURNAL_FAULT, read once at start) kills the process at the two
instants that matter: after the intent is on disk and before the device hears it, and after the device
took the value and before the outcome is on disk. Then: the BACnet controller releases gridctl's
priority 10 on its own when the heartbeats stop; each restart closes the dead run's last intent as
`interrupted`, reclaims what the plan commands, restores the operators' hands off before its first
write, and ships every journal record to the database exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridctl.config import load_site
from sim.core import SimClock
from sim.site import SiteSimulation, free_port_offset
from tests.service.test_run import REPO, Service, _cli, _free_port, _until

SITE = REPO / "sites" / "zac-haute-deule"
TIMEOUT_S = 4.0


def _journal(data: Path, address: str) -> list[tuple]:
    with sqlite3.connect(data / "journal" / "writes.sqlite3") as conn:
        return conn.execute("SELECT seq, action, written_value, outcome FROM records WHERE address = ? ORDER BY seq",
                            [address]).fetchall()


def _audit(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def _post(url: str, token: str, body: dict[str, str]) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _killed(service: Service, timeout_s: float = 180.0) -> int:
    assert service.process is not None
    return service.process.wait(timeout=timeout_s)


@pytest.mark.slow
async def test_kill_between_journal_and_write_and_between_write_and_outcome(tmp_path: Path) -> None:
    # The demonstrator with a watchdog a test can wait for: a heartbeat every second, released after 4 s.
    site_dir = tmp_path / "site"
    shutil.copytree(SITE, site_dir)
    text = (site_dir / "site.yaml").read_text()
    (site_dir / "site.yaml").write_text(text.replace("period_s: 60, timeout_s: 300", f"period_s: 1, timeout_s: {TIMEOUT_S:g}"))
    db = tmp_path / "gridctl.sqlite3"
    data = tmp_path / "data"
    env = {**os.environ, "GRIDCTL_DATA_DIR": str(data)}
    _cli("db", "upgrade", "--db", str(db), env=env)
    token = _cli("users", "add", "ops", "--role", "operator", "--scope", "zac-haute-deule", "--db", str(db),
                 env=env).strip().split()[-1]
    offset = free_port_offset(load_site(site_dir))
    simulation = SiteSimulation(site_dir, SimClock(datetime.now(UTC), speed=1.0), seed=5, port_offset=offset)
    north, south = simulation.devices["lighting-north"], simulation.devices["lighting-south"]
    port = _free_port()
    log = tmp_path / "service.log"

    def service(fault: str | None = None) -> Service:
        run = Service(db, offset, port, {**env, "GRIDCTL_JOURNAL_FAULT": fault} if fault else env, log)
        run.args[run.args.index(str(SITE))] = str(site_dir)
        return run

    await simulation.start()
    runs: list[Service] = []
    try:
        # 1. Killed after the intent of lighting-north/zone-1-dimming is on disk: the device never hears it.
        runs.append(first := service("after-intent:lighting-north/zone-1-dimming"))
        first.start()
        assert await asyncio.to_thread(_killed, first) == -signal.SIGKILL
        zone_1 = _journal(data, "lighting-north/zone-1-dimming")
        assert [(action, outcome) for _, action, _, outcome in zone_1] == [("write", None)]
        assert not any(point == "zone-1-dimming" for _, point, _, _ in north.writes)

        # 2. Killed after lighting-north/zone-2-dimming reached the controller, before its outcome.
        runs.append(second := service("after-write:lighting-north/zone-2-dimming"))
        second.start()
        assert await asyncio.to_thread(_killed, second) == -signal.SIGKILL
        killed_at = time.monotonic()
        ((_, _, sent, outcome),) = [r for r in _journal(data, "lighting-north/zone-2-dimming")]
        assert outcome is None and north.priority_array("zone-2-dimming")[9] == json.loads(sent)
        # The first run's intent was closed when the second one opened the journal, and the point reclaimed:
        # the device may have had it.
        zone_1 = [o for *_, o in _journal(data, "lighting-north/zone-1-dimming")]
        assert zone_1[:2] == ["interrupted", "reclaimed"]
        # Nobody relinquishes: the controller's own watchdog releases priority 10 when the heartbeats stop.
        await _until(lambda: north.priority_array("zone-2-dimming")[9] is None, TIMEOUT_S + 10, "the release")
        released_after_s = time.monotonic() - killed_at
        assert released_after_s <= TIMEOUT_S + 3 and north.watchdog.trips >= 1  # type: ignore[union-attr]
        print(f"priority 10 released by the controller {released_after_s:.1f} s after SIGKILL")

        # 3. A normal run: interrupted intents shipped, what the plan commands reclaimed; an operator takes
        # the south lighting hands off; then SIGKILL.
        runs.append(third := service())
        third.start()

        def shipped() -> bool:
            rows = _audit(db, "SELECT address, outcome FROM write_audit WHERE outcome IN ('interrupted', 'reclaimed')")
            return {("lighting-north/zone-1-dimming", "interrupted"), ("lighting-north/zone-2-dimming", "interrupted"),
                    ("lighting-north/zone-2-dimming", "reclaimed")} <= set(rows)

        await _until(shipped, 120, "the interrupted and reclaimed writes in the database")
        await _until(lambda: south.priority_array("zone-1-dimming")[9] is not None, 120, "a south lighting write")
        answer = await asyncio.to_thread(_post, f"http://127.0.0.1:{port}/api/v1/sites/zac-haute-deule/hands-off",
                                         token, {"scope": "device:lighting-south", "reason": "relamping"})
        assert "device:lighting-south" in answer["scopes"]  # type: ignore[index]
        assert south.priority_array("zone-1-dimming")[9] is None
        south_writes = len(south.writes)
        third.kill()

        # 4. The hands off is back before the first write: the south lighting is never commanded again.
        north_writes = len(north.writes)
        runs.append(fourth := service())
        fourth.start()
        await _until(lambda: any(w[1] == "zone-1-dimming" and w[2] is not None
                                 for w in list(north.writes)[north_writes:]), 120, "the fourth run's first dispatch")
        await asyncio.sleep(5)  # two more dispatch cycles: time for a wrong write to the south to show
        assert [w for w in list(south.writes)[south_writes:] if w[2] is not None] == []
        assert await asyncio.to_thread(fourth.stop) == 0
    finally:
        for run in runs:
            run.kill()
        await simulation.stop()

    # Every journal record is in the database exactly once, under one instance id, and nothing waits.
    with sqlite3.connect(data / "journal" / "writes.sqlite3") as conn:
        journal = conn.execute("SELECT seq FROM records WHERE action NOT IN ('hands_off', 'hands_on') "
                               "ORDER BY seq").fetchall()
        assert conn.execute("SELECT count(*) FROM records WHERE shipped = 0").fetchone() == (0,)
    audit = _audit(db, "SELECT instance_id, journal_seq FROM write_audit ORDER BY journal_seq")
    assert [seq for _, seq in audit] == [seq for (seq,) in journal]
    assert len({instance for instance, _ in audit}) == 1
    assert _audit(db, "SELECT scope, actor, reason FROM hands_off") == [("device:lighting-south", "ops", "relamping")]
    # The south lighting, hands off, was never reclaimed.
    assert ("lighting-south/zone-1-dimming", "reclaimed") not in set(
        _audit(db, "SELECT address, outcome FROM write_audit"))
    lines = log.read_text().splitlines()
    assert not [line for line in lines if '"level": "error"' in line and '"logger": "gridctl' in line]
