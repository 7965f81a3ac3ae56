"""Fault drills: `gridctl run` in its own process against a simulated site, with fault proxies between it
and PostgreSQL and between it and one device; the figures an operator would want from each drill.

The drill site is a copy of the site whose device ports are where the simulation listens, except the
proxied device's, which is the proxy's. Readings are counted from gridctl's side (its final log line:
written + spooled) and from the database's (rows stored); writes from the simulated devices' side (every
write they receive) and from the database's `write_audit`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from gridctl.config import load_site
from sim.core import SimClock
from sim.faults import FaultProxy
from sim.site import SiteSimulation, free_port_offset

REPO = Path(__file__).resolve().parents[1]
# Outcomes of an audit row whose write reached the device, and the condition on a `write_audit` row (its
# action says whether anything was sent: a relinquish without I/O is a note).
SENT_OUTCOMES = ("written", "renewed", "relinquished", "mismatch", "override")
SENT = "outcome = ANY(%s) AND action IS DISTINCT FROM 'note'"
LEASE_EXPIRY_PERIODS = 3.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proxied_dsn(dsn: str, port: int) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(port))
    return psycopg.conninfo.make_conninfo(**params)


def drill_site(source: Path, target: Path, offset: int, moved: dict[int, int]) -> Path:
    """Copy a site folder with every loopback port moved by `offset`, and then the ports in `moved` (the
    simulation's port -> where gridctl must connect instead)."""
    shutil.copytree(source, target)
    path = target / "site.yaml"

    def port(n: int) -> int:
        return moved.get(n + offset, n + offset)

    text = re.sub(r"(\bport: )(\d+)", lambda m: f"{m[1]}{port(int(m[2]))}", path.read_text())
    text = re.sub(r"(127\.0\.0\.1:)(\d+)", lambda m: f"{m[1]}{port(int(m[2]))}", text)
    path.write_text(text)
    return target


@dataclass
class Run:
    """One `gridctl run` process."""

    process: subprocess.Popen[bytes]
    log: Path
    started: datetime
    stopped: datetime | None = None
    killed: bool = False

    def final_stats(self) -> dict[str, int]:
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if '"readings_written"' in line:
                entry = json.loads(line)
                return {k: int(entry[k]) for k in ("readings_written", "readings_spooled", "readings_flushed",
                                                    "readings_still_spooled")}
        return {}


@dataclass
class DrillHost:
    """The simulated site, the proxies and gridctl's processes, on one PostgreSQL database."""

    site_dir: Path
    dsn: str
    work: Path
    silent_device: str
    dispatch_s: float = 2.0
    seed: int = 3
    runs: list[Run] = field(default_factory=list)
    device_writes: list[tuple[datetime, str, str]] = field(default_factory=list)

    async def start(self) -> None:
        site = load_site(self.site_dir)
        self.site = site
        self.offset = free_port_offset(site)
        self.simulation = SiteSimulation(self.site_dir, SimClock(datetime.now(UTC), speed=1.0), seed=self.seed,
                                         port_offset=self.offset)
        device = next(d for d in site.devices if d.id == self.silent_device)
        device_port = int(device.port) + self.offset  # type: ignore[attr-defined]
        self.device_proxy = FaultProxy("127.0.0.1", device_port).start()
        db_port = int(psycopg.conninfo.conninfo_to_dict(self.dsn).get("port", 5432))
        self.db_proxy = FaultProxy("127.0.0.1", db_port).start()
        self.gridctl_site = drill_site(self.site_dir, self.work / "site", self.offset,
                                       {device_port: self.device_proxy.port})
        for sim_device in self.simulation.devices.values():
            sim_device.on_write(lambda d, point, _value, _priority: self.device_writes.append(
                (datetime.now(UTC), d.id, point)))
        await self.simulation.start()
        self.port = free_port()
        await asyncio.to_thread(_gridctl, "db", "upgrade", "--db", self.dsn, "--site", str(self.gridctl_site))
        added = await asyncio.to_thread(_gridctl, "users", "add", "drill", "--role", "operator", "--scope", site.id,
                                        "--db", self.dsn)
        self.token = added.strip().split()[-1]

    def launch(self) -> Run:
        log = self.work / f"gridctl-{len(self.runs)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "gridctl.cli", "run", str(self.gridctl_site), "--db",
             proxied_dsn(self.dsn, self.db_proxy.port), "--port", str(self.port), "--dispatch-s", str(self.dispatch_s),
             "--optimise-s", "30"],
            cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "GRIDCTL_DATA_DIR": str(self.work / "data")})
        run = Run(process, log, datetime.now(UTC))
        self.runs.append(run)
        return run

    async def ready(self, timeout_s: float = 120.0) -> None:
        """gridctl answers, stores readings and has audited a write."""
        await until(lambda: self.alarms() is not None and self.stored() > 0 and self.audited_since(
            self.runs[-1].started) > 0, timeout_s, "gridctl to store readings and audit a write")

    def stop(self, run: Run) -> int:
        run.process.send_signal(signal.SIGTERM)
        code = run.process.wait(timeout=120)
        run.stopped = datetime.now(UTC)
        return code

    def kill(self, run: Run) -> None:
        run.process.kill()
        run.process.wait(timeout=30)
        run.stopped = datetime.now(UTC)
        run.killed = True

    async def close(self) -> None:
        for run in self.runs:
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait(timeout=30)
        await self.simulation.stop()
        self.device_proxy.stop()
        self.db_proxy.stop()

    # --- what gridctl says ----------------------------------------------------------------------

    def get(self, path: str, timeout_s: float = 30.0) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                body = answer.read()
                return answer.status, json.loads(body) if path.startswith("/api") else body.decode()
        except urllib.error.HTTPError as error:
            return error.code, None
        except (urllib.error.URLError, OSError):
            return 0, None

    def alarm_gone(self, alarm: tuple[str, str]) -> bool:
        alarms = self.alarms()
        return alarms is not None and alarm not in alarms

    def alarms(self) -> set[tuple[str, str]] | None:
        status, body = self.get(f"/api/v1/sites/{self.site.id}/alarms")
        return {(a["kind"], a["subject"]) for a in body} if status == 200 else None

    def metrics(self) -> dict[str, float]:
        status, body = self.get("/metrics")
        out: dict[str, float] = {}
        if status != 200:
            return out
        for line in body.splitlines():
            if line.startswith(("gridctl_readings{", "gridctl_history_available", "gridctl_spool_readings{")):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def flushed(self) -> float:
        return self.metrics().get('gridctl_readings{path="flushed"}', -1.0)

    def spooled_now(self) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith("gridctl_spool_readings{"))

    # --- what the database and the devices say --------------------------------------------------

    def _one(self, sql: str, params: list[Any] | None = None) -> Any:
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            return conn.execute(sql, params or []).fetchone()

    def stored(self, start: datetime | None = None, end: datetime | None = None) -> int:
        start = start or datetime(2000, 1, 1, tzinfo=UTC)
        end = end or datetime(2100, 1, 1, tzinfo=UTC)
        return int(self._one("SELECT count(*) FROM readings WHERE ts >= %s AND ts < %s", [start, end])[0])

    def duplicated(self) -> int:
        total, distinct = self._one("SELECT count(*), count(DISTINCT (point_id, ts)) FROM readings")
        return int(total) - int(distinct)

    def audited_since(self, start: datetime, end: datetime | None = None) -> int:
        end = end or datetime(2100, 1, 1, tzinfo=UTC)
        return int(self._one(f"SELECT count(*) FROM write_audit WHERE ts >= %s AND ts < %s AND {SENT}",
                             [start, end, list(SENT_OUTCOMES)])[0])

    def interrupted_since(self, start: datetime, end: datetime) -> int:
        """Writes a killed process sent or was about to send: the device may or may not have received them."""
        return int(self._one("SELECT count(*) FROM write_audit WHERE ts >= %s AND ts < %s AND outcome = 'interrupted'",
                             [start, end])[0])

    def writes_sent(self, start: datetime, end: datetime) -> int:
        return sum(1 for at, _d, _p in self.device_writes if start <= at < end)

    def leases_lapsed(self, start: datetime, end: datetime) -> int:
        """Leased points (of answering devices) whose device went longer than its lease without a write
        between `start` and `end`, while gridctl ran: the device would have fallen back."""
        lapsed = 0
        for _address, device, point in self.site.all_points():
            if not point.lease_s or device.id == self.silent_device:
                continue
            times = sorted(at for at, d, p in self.device_writes if (d, p) == (device.id, point.id)
                           and start <= at < end)
            if not times:
                continue
            limit = timedelta(seconds=point.lease_s * LEASE_EXPIRY_PERIODS)
            if any(b - a > limit for a, b in itertools.pairwise(times)) or end - times[-1] > limit:
                lapsed += 1
        return lapsed


def _gridctl(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gridctl.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"gridctl {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


async def until(condition: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.25) -> float:
    """Wait for a (blocking) condition, checked off the event loop; the monotonic time it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return time.monotonic()
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def db_outage(host: DrillHost, fault: str, outage_s: float) -> dict[str, Any]:
    """The database goes away (`blackhole` or `reset`) for `outage_s`, then comes back."""
    run = host.runs[-1]
    subject = ("history_unavailable", host.site.id)
    before = host.metrics()
    failed_at = time.monotonic()
    getattr(host.db_proxy, fault)()
    told = await until(lambda: subject in (host.alarms() or set()), 60, "the history_unavailable alarm")
    slowest_api_s = 0.0
    api_statuses: set[int] = set()
    while time.monotonic() - failed_at < outage_s:
        started = time.monotonic()
        status, _body = await asyncio.to_thread(host.get, f"/api/v1/sites/{host.site.id}/alarms")
        slowest_api_s = max(slowest_api_s, time.monotonic() - started)
        api_statuses.add(status)
        await asyncio.sleep(1.0)
    spooled_at_heal = await asyncio.to_thread(host.spooled_now)
    at_heal = host.metrics()
    flushed_before = at_heal.get('gridctl_readings{path="flushed"}', 0.0)
    host.db_proxy.heal()
    healed = time.monotonic()
    drain_started = await until(lambda: host.flushed() > flushed_before, 60, "the spool to start draining", 0.1)
    drained = await until(lambda: host.spooled_now() == 0, 300, "the spool to drain", 0.2)
    cleared = await until(lambda: host.alarm_gone(subject), 60, "the alarm to clear")
    arrived = (sum(at_heal.get(f'gridctl_readings{{path="{p}"}}', 0.0) for p in ("written", "spooled"))
               - sum(before.get(f'gridctl_readings{{path="{p}"}}', 0.0) for p in ("written", "spooled")))
    ingest_rate = arrived / (healed - failed_at)
    return {
        "fault": fault, "outage_s": round(healed - failed_at, 1),
        "alarm_latency_s": round(told - failed_at, 2), "alarm_cleared_s": round(cleared - healed, 2),
        "drain_start_s": round(drain_started - healed, 2),
        "spooled_at_recovery": int(spooled_at_heal),
        "drain_readings_per_s": round(spooled_at_heal / max(drained - healed, 1e-3), 1),
        "ingest_readings_per_s": round(ingest_rate, 1),
        "api_during_outage": {"statuses": sorted(api_statuses), "slowest_s": round(slowest_api_s, 2)},
        "run": run,
    }


async def device_silent(host: DrillHost, silent_s: float) -> dict[str, Any]:
    """The proxied device stops answering (blackhole) for `silent_s`, then answers again."""
    start = datetime.now(UTC)
    host.device_proxy.blackhole()
    offline = ("device_offline", host.silent_device)
    told_at = time.monotonic()
    began = told_at
    told = await until(lambda: offline in (host.alarms() or set()), silent_s + 60, "the device_offline alarm")
    stale: set[str] = set()
    while time.monotonic() - began < silent_s:
        stale |= {s for k, s in (await asyncio.to_thread(host.alarms) or set()) if k == "stale_point"}
        await asyncio.sleep(1.0)
    end = datetime.now(UTC)
    host.device_proxy.heal()
    await until(lambda: host.alarm_gone(offline), 120, "the device_offline alarm to clear")
    gaps = _poll_gaps(host, start, end)
    return {"silent_s": silent_s, "offline_alarm_s": round(told - began, 2), "stale_point_alarms": sorted(stale),
            "silent_device_readings": _device_quality(host, start, end), "others_poll_gap_ratio": gaps}


def _poll_gaps(host: DrillHost, start: datetime, end: datetime) -> float:
    """The longest gap between two stored readings of a point of an answering device during the silence,
    in poll periods (1.0: every poll on time)."""
    worst = 0.0
    with psycopg.connect(host.dsn) as conn:
        rows = conn.execute(
            "SELECT p.address, array_agg(r.ts ORDER BY r.ts) FROM readings AS r JOIN points AS p ON p.id = r.point_id "
            "WHERE r.ts >= %s AND r.ts < %s GROUP BY p.address", [start, end]).fetchall()
    periods = {d.id: d.poll_interval_s for d in host.site.devices}
    for address, stamps in rows:
        device = address.partition("/")[0]
        if device == host.silent_device or len(stamps) < 2:
            continue
        gap = max((b - a).total_seconds() for a, b in itertools.pairwise(stamps))
        worst = max(worst, gap / max(periods.get(device, 1.0), 1.0))
    return round(worst, 2)


def _device_quality(host: DrillHost, start: datetime, end: datetime) -> dict[str, int]:
    with psycopg.connect(host.dsn) as conn:
        rows = conn.execute(
            "SELECT r.quality, count(*) FROM readings AS r JOIN points AS p ON p.id = r.point_id "
            "WHERE p.address LIKE %s AND r.ts >= %s AND r.ts < %s GROUP BY r.quality",
            [f"{host.silent_device}/%", start, end]).fetchall()
    names = {0: "good", 1: "stale", 2: "bad"}
    return {names.get(q, str(q)): int(n) for q, n in rows}


def run_counts(host: DrillHost, run: Run) -> dict[str, Any]:
    """Readings and writes of one gridctl run, from both sides."""
    end = run.stopped or datetime.now(UTC)
    stats = run.final_stats()
    counts: dict[str, Any] = {
        "readings_stored": host.stored(run.started, end + timedelta(seconds=1)),
        "readings_duplicated": host.duplicated(),
        "writes_sent": host.writes_sent(run.started, end + timedelta(seconds=1)),
        "writes_audited": host.audited_since(run.started, end + timedelta(seconds=1)),
        "writes_interrupted": host.interrupted_since(run.started, end + timedelta(seconds=1)),
        "leases_lapsed": host.leases_lapsed(run.started, end),
    }
    if stats:
        counts["readings_expected"] = stats["readings_written"] + stats["readings_spooled"]
    return counts
