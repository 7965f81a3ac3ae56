"""Failover drills: several `gridctl run --cluster` processes on one PostgreSQL database share simulated
sites through site leases; an owner is killed (SIGKILL) or cut from the database (a fault proxy on its
link goes silent), and the figures say how long the site went without an owner, whether two instances
ever wrote to the same device at once, and whether any reading was lost or stored twice.

Each instance has its own data directory (journal, spool), API port and database link through its own
fault proxy. Device writes are counted where they land (every simulated device logs what it receives)
and in the database's `write_audit`, whose rows name their instance and lease epoch.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from gridctl.api.db import open_database
from gridctl.api.store import ApiStore, Role
from gridctl.config import load_site
from gridctl.history import open_historian
from sim.core import SimClock
from sim.drills import REPO, SENT, SENT_OUTCOMES, drill_site, free_port, proxied_dsn, until
from sim.faults import FaultProxy
from sim.site import SiteSimulation, free_port_offset


@dataclass
class Timing:
    lease_s: float = 8.0
    renew_s: float = 1.0
    write_budget_s: float = 2.5
    live_s: float = 1.0
    dispatch_s: float = 2.0
    optimise_s: float = 60.0


@dataclass
class Member:
    """One instance: its data directory, API port and database link."""

    index: int
    data: Path
    port: int
    proxy: FaultProxy
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    instance_id: str | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Cluster:
    """Simulated sites, their gridctl instances and the database they share."""

    def __init__(self, sites: list[Path], dsn: str, work: Path, *, instances: int = 3,
                 timing: Timing | None = None) -> None:
        self.sources = sites
        self.dsn = dsn
        self.work = work
        self.timing = timing or Timing()
        self.count = instances
        self.members: list[Member] = []
        self.simulations: list[SiteSimulation] = []
        # (when, site, device, point, value) of every write a simulated device received.
        self.device_writes: list[tuple[datetime, str, str, str, Any]] = []

    async def start(self) -> None:
        loaded = [load_site(s) for s in self.sources]
        self.site_ids = [s.id for s in loaded]
        self.sites = {s.id: s for s in loaded}
        offset = free_port_offset(*loaded)
        self.site_dirs = []
        for source, site in zip(self.sources, loaded, strict=True):
            simulation = SiteSimulation(source, SimClock(datetime.now(UTC), speed=1.0), seed=7, port_offset=offset)
            for device in simulation.devices.values():
                device.on_write(lambda d, point, value, _priority, site_id=site.id: self.device_writes.append(
                    (datetime.now(UTC), site_id, d.id, point, value)))
            self.simulations.append(simulation)
            self.site_dirs.append(drill_site(source, self.work / "sites" / site.id, offset, {}))
        for simulation in self.simulations:
            await simulation.start()
        db_port = int(psycopg.conninfo.conninfo_to_dict(self.dsn).get("port", 5432))
        historian = open_historian(self.dsn)
        await historian.open()
        try:
            await historian.upgrade(loaded)
        finally:
            await historian.close()
        db = open_database(self.dsn)
        await db.open()
        try:
            store, now = ApiStore(db), datetime.now(UTC)
            _, self.token = await store.add_user("drill-operator", Role.OPERATOR, ["*"], now, timedelta(days=1))
            _, self.manager_token = await store.add_user("drill-manager", Role.MANAGER, ["*"], now, timedelta(days=1))
        finally:
            await db.close()
        for index in range(self.count):
            self.members.append(Member(index, self.work / f"instance-{index}", free_port(),
                                       FaultProxy("127.0.0.1", db_port).start()))

    def launch(self, member: Member) -> None:
        timing = self.timing
        member.log = self.work / f"gridctl-{member.index}-{len(member.runs)}.log"
        member.process = subprocess.Popen(
            [sys.executable, "-m", "gridctl.cli", "run", *map(str, self.site_dirs), "--db",
             proxied_dsn(self.dsn, member.proxy.port), "--port", str(member.port), "--dispatch-s",
             str(timing.dispatch_s), "--optimise-s", str(timing.optimise_s), "--cluster", "--lease-s",
             str(timing.lease_s), "--renew-s", str(timing.renew_s), "--write-budget-s", str(timing.write_budget_s),
             "--live-s", str(timing.live_s)],
            cwd=REPO, stdout=member.log.open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "GRIDCTL_DATA_DIR": str(member.data)})
        member.runs.append({"log": member.log, "started": datetime.now(UTC), "killed": False, "metrics": {}})

    async def identify(self, member: Member, timeout_s: float = 60.0) -> str:
        """The instance id of a member (its journal's, made with the journal file)."""
        path = member.data / "journal" / "writes.sqlite3"

        def read() -> str | None:
            if not path.exists():
                return None
            try:
                with sqlite3.connect(path, timeout=5) as conn:
                    row = conn.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
            except sqlite3.Error:
                return None
            return row[0] if row else None

        await until(read, timeout_s, f"instance {member.index}'s journal")
        member.instance_id = read()
        return member.instance_id  # type: ignore[return-value]

    def member_of(self, instance_id: str | None) -> Member | None:
        return next((m for m in self.members if m.instance_id == instance_id), None)

    def kill(self, member: Member) -> None:
        assert member.process is not None
        member.runs[-1]["metrics"] = self.metrics(member)
        member.process.kill()
        member.process.wait(timeout=30)
        member.runs[-1]["stopped"] = datetime.now(UTC)
        member.runs[-1]["killed"] = True

    def stop(self, member: Member, timeout_s: float = 120.0) -> int:
        """SIGTERM, and the exit code; an instance that does not stop in time is killed, its log's tail
        printed, and -9 returned."""
        assert member.process is not None
        member.process.send_signal(signal.SIGTERM)
        try:
            code = member.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            member.process.kill()
            code = member.process.wait(timeout=30)
            tail = member.log.read_text(errors="replace").splitlines()[-40:] if member.log else []
            print(f"instance {member.index} did not stop within {timeout_s:g} s; its log ends:", *tail,
                  sep="\n", file=sys.stderr)
            code = -9
        member.runs[-1]["stopped"] = datetime.now(UTC)
        return code

    async def close(self) -> None:
        for member in self.members:
            if member.alive:
                member.process.kill()  # type: ignore[union-attr]
                member.process.wait(timeout=30)  # type: ignore[union-attr]
            member.proxy.stop()
        for simulation in self.simulations:
            await simulation.stop()

    # --- what the database says -----------------------------------------------------------------------

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            return conn.execute(sql, params or []).fetchall()

    def owners(self) -> dict[str, tuple[str, int]]:
        """Live leases: site -> (instance, epoch)."""
        return {site: (owner, int(epoch)) for site, owner, epoch in self.rows(
            "SELECT site_id, owner, epoch FROM site_leases WHERE expires_at > clock_timestamp()")}

    def written_under(self, site_id: str, epoch: int) -> bool:
        return bool(self.rows(f"SELECT 1 FROM write_audit WHERE site_id = %s AND epoch = %s AND {SENT} LIMIT 1",
                              [site_id, epoch, list(SENT_OUTCOMES)]))

    async def settled(self, timeout_s: float = 120.0) -> dict[str, tuple[str, int]]:
        """Every site owned, each live instance its fair share, and a write made under every lease."""
        def ready() -> bool:
            owners = self.owners()
            alive = {m.instance_id for m in self.members if m.alive}
            if set(owners) != set(self.site_ids) or not {o for o, _ in owners.values()} <= alive:
                return False
            counts = [sum(1 for o, _ in owners.values() if o == i) for i in alive]
            return max(counts) - min(counts) <= 1 and all(self.written_under(s, e) for s, (_, e) in owners.items())

        await until(ready, timeout_s, "every site owned, shared fairly and written")
        return self.owners()

    async def taken_over(self, site_id: str, after_epoch: int, timeout_s: float) -> tuple[float, str, int]:
        """Wait for another lease epoch on the site; the monotonic time it was seen, its owner, its epoch."""
        found: list[tuple[str, int]] = []

        def new_owner() -> bool:
            owner = self.owners().get(site_id)
            if owner is not None and owner[1] > after_epoch:
                found.append(owner)
                return True
            return False

        seen = await until(new_owner, timeout_s, f"another instance to take {site_id} over", 0.1)
        return seen, *found[-1]

    # --- an instance's API and metrics --------------------------------------------------------------

    def api(self, member: Member, method: str, path: str, body: dict[str, Any] | None = None,
            token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{member.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if path.startswith("/api") else raw.decode()
        except urllib.error.HTTPError as error:
            return error.code, None
        except (urllib.error.URLError, OSError):
            return 0, None

    def metrics(self, member: Member) -> dict[str, float]:
        status, body = self.api(member, "GET", "/metrics")
        out: dict[str, float] = {}
        if status == 200:
            for line in body.splitlines():
                if line.startswith("gridctl_readings{"):
                    name, _, value = line.rpartition(" ")
                    out[name] = float(value)
        return out

    # --- the figures ------------------------------------------------------------------------------------

    def readings_acknowledged(self) -> int:
        """Readings the instances took in (written or spooled): their final log lines, or for a killed run
        its last metrics."""
        total = 0
        for member in self.members:
            for run in member.runs:
                if run["killed"]:
                    total += int(sum(run["metrics"].get(f'gridctl_readings{{path="{p}"}}', 0.0)
                                     for p in ("written", "spooled")))
                else:
                    total += _final_readings(run["log"])
        return total

    def readings_stored(self) -> tuple[int, int]:
        total, distinct = self.rows("SELECT count(*), count(DISTINCT (point_id, ts)) FROM readings")[0]
        return int(total), int(total) - int(distinct)

    def double_writers(self) -> dict[str, Any]:
        """Per device, the span of each lease epoch's writes (first intent to last outcome): spans of
        different epochs that overlap are moments two instances wrote to the same device."""
        rows = self.rows(
            "SELECT site_id, device_id, epoch, instance_id, min(ts), max(coalesce(outcome_at, ts)), count(*) "
            f"FROM write_audit WHERE {SENT} GROUP BY site_id, device_id, epoch, instance_id",
            [list(SENT_OUTCOMES)])
        spans: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
        unfenced = unnamed = 0
        writers: dict[tuple[str, int], set[str]] = defaultdict(set)
        for site, device, epoch, instance, first, last, count in rows:
            if epoch is None:
                unfenced += count
            if instance is None:
                unnamed += count
            writers[(site, epoch or 0)].add(instance)
            spans[(site, device)].append((epoch or 0, instance, first, last))
        overlaps = []
        for (site, device), found in spans.items():
            for a, b in itertools.combinations(sorted(found, key=lambda s: s[0]), 2):
                if a[0] != b[0] and a[3] > b[2]:
                    overlaps.append({"site": site, "device": device, "epochs": [a[0], b[0]],
                                     "instances": [a[1], b[1]]})
        return {"double_writer_intervals": len(overlaps), "overlaps": overlaps[:10], "writes_without_epoch": unfenced,
                "writes_without_instance": unnamed,
                # A lease epoch is one instance's: two writers under one epoch would defeat the fencing.
                "epochs_with_two_writers": sum(1 for names in writers.values() if len(names) > 1),
                "devices": len(spans)}

    def writes(self, start: datetime, end: datetime) -> dict[str, Any]:
        received = [(site, f"{device}/{point}") for at, site, device, point, _ in self.device_writes
                    if start <= at < end]
        audited = self.rows(f"SELECT site_id, address, count(*) FILTER (WHERE {SENT}), "
                            "array_agg(outcome || coalesce(': ' || error, '') ORDER BY ts) FILTER (WHERE NOT "
                            f"({SENT})) FROM write_audit WHERE ts >= %s AND ts < %s AND action IS DISTINCT FROM "
                            "'note' GROUP BY 1, 2", [list(SENT_OUTCOMES), list(SENT_OUTCOMES), start, end])
        by_point = {(site, address): (int(count), others or []) for site, address, count, others in audited}
        counted: dict[tuple[str, str], int] = defaultdict(int)
        for key in received:
            counted[key] += 1
        unmatched = [{"point": "/".join(key), "received": counted[key], "audited": by_point.get(key, (0, []))[0],
                      "not_sent": by_point.get(key, (0, []))[1][-3:]}
                     for key in sorted(set(counted) | set(by_point)) if counted[key] != by_point.get(key, (0, []))[0]]
        return {"writes_sent": len(received), "writes_audited": sum(c for c, _ in by_point.values()),
                "writes_unmatched": unmatched[:10]}


def _final_readings(log: Path) -> int:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if '"readings_written"' in line:
            entry = json.loads(line)
            return int(entry["readings_written"]) + int(entry["readings_spooled"])
    return 0


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 2)


async def drill(cluster: Cluster, log: Any = print) -> dict[str, Any]:
    """Start every instance; kill -9 one owner; cut another from the database, then kill it with readings
    in its spool; bring both back (their sites rebalance, the spool replays); ask a hands off and a
    demand-response event of a site on an instance that does not own it; stop every instance in turn."""
    timing = cluster.timing
    began = datetime.now(UTC)
    t0 = time.monotonic()
    say = log
    log = lambda text: say(f"[{elapsed(t0):6.1f} s] {text}")  # noqa: E731
    for member in cluster.members:
        cluster.launch(member)
    for member in cluster.members:
        await cluster.identify(member)
    owners = await cluster.settled()
    # The baseline: every site owned and written from a cold start of all instances at once.
    cold_start_s = elapsed(t0)
    log(f"settled: {owners}")
    out: dict[str, Any] = {"lease_s": timing.lease_s, "renew_s": timing.renew_s, "cold_start_s": cold_start_s}

    # At once: an owner killed with SIGKILL, and another cut from the database (it stops commanding before
    # its lease ends; the readings it took meanwhile wait in its spool). The third takes both sites over.
    (killed_site, (victim_id, killed_epoch)), (cut_site, (cut_id, cut_epoch)) = [
        next((s, o) for s, o in sorted(owners.items()) if o[0] == i)
        for i in sorted({o for o, _ in owners.values()})[:2]]
    victim, cut = cluster.member_of(victim_id), cluster.member_of(cut_id)
    assert victim is not None and cut is not None
    began_fault = time.monotonic()
    # Off the event loop, as every blocking call here: the simulated devices answer on it, and a write
    # they answer late is retried by the driver and received twice.
    await asyncio.to_thread(cluster.kill, victim)
    cut.proxy.blackhole()

    async def takeover(site: str, epoch: int) -> dict[str, Any]:
        seen, heir, new_epoch = await cluster.taken_over(site, epoch, 4 * timing.lease_s)
        written = await until(lambda: cluster.written_under(site, new_epoch), 60, f"a write to {site} by its new "
                              "owner", 0.1)
        return {"site": site, "to": heir, "epochs": [epoch, new_epoch], "takeover_s": round(seen - began_fault, 2),
                "first_write_s": round(written - began_fault, 2)}

    out["kill9"], out["partition"] = await asyncio.gather(takeover(killed_site, killed_epoch),
                                                          takeover(cut_site, cut_epoch))
    out["kill9"]["from"], out["partition"]["from"] = victim_id, cut_id
    log(f"kill -9: {out['kill9']}")
    log(f"partition: {out['partition']}")
    await until(lambda: _spooled(cluster, cut) > 0, 60, "readings in the cut instance's spool")
    out["partition"]["spooled_at_kill"] = await asyncio.to_thread(_spooled, cluster, cut)
    await asyncio.to_thread(cluster.kill, cut)
    cut.proxy.heal()

    # Both come back: the killed one ships what its journal holds, the cut one replays its spool; the sites
    # are shared again.
    cluster.launch(victim)
    cluster.launch(cut)
    owners = await cluster.settled(180)
    await until(lambda: _spooled(cluster, cut) == 0, 120, "the restarted instance to replay its spool")
    log(f"rebalanced: {owners}")

    # Any instance answers: live values of every site everywhere; requests made where the site is not owned.
    live = {}
    for member in (m for m in cluster.members if m.alive):
        for site_id in cluster.site_ids:
            status, body = await asyncio.to_thread(cluster.api, member, "GET", f"/api/v1/sites/{site_id}/live")
            live[f"{member.index}:{site_id}"] = len(body) if status == 200 and body else 0
    out["live_points"] = live
    site, (owner, _epoch) = sorted(owners.items())[-1]
    other = next(m for m in cluster.members if m.alive and m.instance_id != owner)
    owning = cluster.member_of(owner)
    assert owning is not None
    device = next(d.id for d in cluster.sites[site].devices
                  if any(p.writable for _, dev, p in cluster.sites[site].all_points() if dev.id == d.id))
    asked = time.monotonic()
    status, body = await asyncio.to_thread(cluster.api, other, "POST", f"/api/v1/sites/{site}/hands-off",
                                           {"scope": f"device:{device}", "reason": "failover drill"})
    confirmed = elapsed(asked)
    seen_by_owner = await until(lambda: f"device:{device}" in (cluster.api(owning, "GET", f"/api/v1/sites/{site}"
                                                                            "/hands-off")[1] or {}).get("scopes", []),
                                30, "the owner to hold the hands off", 0.1)
    status_on, _ = await asyncio.to_thread(cluster.api, other, "DELETE",
                                           f"/api/v1/sites/{site}/hands-off?scope=device:{device}")
    out["hands_off"] = {"site": site, "asked_on": other.instance_id, "owner": owner, "status": status,
                        "pending": (body or {}).get("pending"), "confirmed_s": confirmed,
                        "owner_holds_s": round(seen_by_owner - asked, 2), "hands_on_status": status_on}
    start = datetime.now(UTC)
    event = {"id": "drill-1", "start": (start.replace(microsecond=0)).isoformat(),
             "end": datetime.fromtimestamp(start.timestamp() + 3600, UTC).replace(microsecond=0).isoformat(),
             "max_import_kw": 50, "value_eur_per_kwh": 0.3}
    asked = time.monotonic()
    status, _ = await asyncio.to_thread(cluster.api, other, "POST", f"/api/v1/sites/{site}/demand-response", event,
                                        cluster.manager_token)
    assert owning.log is not None
    honoured = await until(lambda: "demand-response event drill-1 honoured" in owning.log.read_text(errors="replace"),
                           30, "the owner to honour the demand-response event", 0.1)
    out["demand_response"] = {"status": status, "owner_follows_s": round(honoured - asked, 2)}
    log(f"requests: {out['hands_off']} {out['demand_response']}")

    # Stop them all at once: each leaves first, so none hands a site to another stopping one.
    log("stopping")
    out["exit_codes"] = await asyncio.gather(*(asyncio.to_thread(cluster.stop, m) for m in cluster.members))
    ended = datetime.now(UTC)
    log("stopped")
    stored, duplicated = cluster.readings_stored()
    acknowledged = cluster.readings_acknowledged()
    out.update(cluster.double_writers())
    out.update(cluster.writes(began, ended))
    out["writes_interrupted"] = int(cluster.rows(
        "SELECT count(*) FROM write_audit WHERE outcome = 'interrupted'")[0][0])
    out.update({"readings_acknowledged": acknowledged, "readings_stored": stored,
                "readings_lost": max(0, acknowledged - stored), "readings_duplicated": duplicated,
                "takeover_s": max(out["kill9"]["takeover_s"], out["partition"]["takeover_s"]),
                "lease_lost_audited": int(cluster.rows(
                    "SELECT count(*) FROM write_audit WHERE outcome = 'lease_lost'")[0][0])})
    return out


def _spooled(cluster: Cluster, member: Member) -> float:
    status, body = cluster.api(member, "GET", "/metrics")
    if status != 200:
        return -1.0
    return sum(float(line.rpartition(" ")[2]) for line in body.splitlines()
               if line.startswith("gridctl_spool_readings{"))
