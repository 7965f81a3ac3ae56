"""How many devices one machine's gridctl holds: generated sites, simulated devices, TimescaleDB.

    python bench/scale.py [--quick] [--steps 1000,2500,5000,10000] [--points 18] [--period 5]
                          [--instances 1,2] [--measure-s 60] [--baseline-at 2500] [--sharing explicit|leases]

Each run generates sites (folders like sites/<name>: site.yaml and maps), serves their devices from
simulator processes (`sim.site.SiteSimulation` without physics, over the real protocol servers), starts
gridctl instances in their own processes against a throwaway TimescaleDB cluster (tests/pgcluster.py),
lets them warm up, then measures a window: readings stored per second (counted in the database),
intervals between successive stored polls of each device (p50, p99), CPU of the gridctl processes
from /proc (seconds per 1,000 stored readings), of the simulators, of PostgreSQL and of the whole
machine, gridctl's memory, the deepest spool and the size of a /metrics scrape.

The device mix (`--mix`), per site of `--site-devices` devices: 80 % Modbus meters behind gateways (32 unit ids
per gateway port, one TCP connection each), 15 % BACnet/IP controllers (one UDP port each), 5 % OPC-UA
devices on building servers (10 devices per server endpoint). Every device has `--points` points on
`--period` seconds: Modbus float32 input registers (two uint32 energy counters), BACnet analog inputs
read by ReadPropertyMultiple, OPC-UA variables read in one batched Read.

The load steps up (`--steps`) for each instance count (`--instances`; with 2, each instance runs half of
the sites, `--sharing explicit`; or, `--sharing leases`, every instance is given every site and runs
`--cluster`: they share the sites through site leases in the database, each claiming its fair share, and
each run reports how many sites each owner held) until a step falls short: fewer than 99 % of the expected readings
stored, or a p99 poll interval above 1.2 periods. The run says what saturated: a gridctl process's
single core (its event loop), a simulator process, PostgreSQL, or the machine's cores all busy. The
baseline, in the same run (`--baseline-at`), is the former behaviour: one database transaction per
device poll and every device due at the same instant.

The last line is one JSON object: every run's figures and the saturation found per instance count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from sim.site import port_free  # noqa: E402

UNITS_PER_GATEWAY = 32
DEVICES_PER_OPCUA_SERVER = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
log = logging.getLogger("bench.scale")


# --------------------------------------------------------------------------------------- sites


class PortPool:
    """Free loopback ports, TCP or UDP, handed out once each."""

    def __init__(self, start: int = 20000, end: int = 60000) -> None:
        self._next = start
        self._end = end

    def take(self, kind: str) -> int:
        while self._next < self._end:
            port, self._next = self._next, self._next + 1
            if port_free(kind, port):
                return port
        raise OSError("no free loopback port left")


def _mix(devices: int, shares: tuple[float, float, float]) -> tuple[int, int, int]:
    """Modbus, BACnet and OPC-UA devices among `devices`, by the shares given; at least one Modbus meter,
    the site's grid meter."""
    total = sum(shares)
    modbus = max(1, round(devices * shares[0] / total))
    bacnet = min(devices - modbus, round(devices * shares[1] / total))
    return modbus, bacnet, devices - modbus - bacnet


def generate_site(root: Path, site_id: str, devices: int, points: int, period_s: float, ports: PortPool,
                  shares: tuple[float, float, float] = (80, 15, 5)) -> Path:
    """One site folder of `devices` devices of `points` points each on `period_s`."""
    folder = root / site_id
    (folder / "maps").mkdir(parents=True)
    modbus, bacnet, opcua = _mix(devices, shares)
    common = f"poll_interval_s: {period_s:g}, timeout_s: 2, retries: 1"
    lines = [
        f"id: {site_id}", f"name: Generated district {site_id}", "timezone: Europe/Paris",
        "location: {latitude: 50.63, longitude: 3.06}",
        "grid:", "  import_limit_kw: 5000", "  export_limit_kw: 2000", "  subscribed_power_kw: 4000",
        "  points: {power: meter-00000/p00, import_energy: meter-00000/energy-import}",
        "tariff: {kind: base, base_price_eur_per_kwh: 0.2}", "buildings: [{id: district, use: residential}]",
        "devices:",
    ]
    port = 0
    for n in range(modbus):
        if n % UNITS_PER_GATEWAY == 0:
            port = ports.take("tcp")
        lines.append(f"  - {{id: meter-{n:05d}, protocol: modbus, map: meter, host: 127.0.0.1, port: {port}, "
                     f"unit_id: {n % UNITS_PER_GATEWAY + 1}, {common}}}")
    for n in range(bacnet):
        lines.append(f"  - {{id: ctrl-{n:05d}, protocol: bacnet, map: controller, "
                     f"address: \"127.0.0.1:{ports.take('udp')}\", device_instance: {100000 + n}, {common}}}")
    endpoint = ""
    for n in range(opcua):
        if n % DEVICES_PER_OPCUA_SERVER == 0:
            endpoint = f"opc.tcp://127.0.0.1:{ports.take('tcp')}/bms-{n // DEVICES_PER_OPCUA_SERVER}"
        namespace = f"urn:scale:{site_id}:bms-{n // DEVICES_PER_OPCUA_SERVER}"
        lines += [f"  - id: bms-{n:05d}", "    protocol: opcua", f"    endpoint: {endpoint}",
                  f"    poll_interval_s: {period_s:g}", "    timeout_s: 2", "    retries: 1", "    points:"]
        lines += [f"      - {{id: p{k:02d}, unit: kW, kind: measurement, node_id: \"nsu={namespace};s=D{n}.P{k:02d}\"}}"
                  for k in range(points)]
    lines.append("assets: []")
    lines.append("dwellings: []")
    (folder / "site.yaml").write_text("\n".join(lines) + "\n")
    measured = max(points - 2, 1)
    meter = ["protocol: modbus", "points:"]
    meter += [f"  - {{id: p{k:02d}, unit: kW, kind: measurement, function: input_register, register: {2 * k}, "
              "data_type: float32}" for k in range(measured)]
    meter += [f"  - {{id: energy-{d}, unit: kWh, kind: energy_counter, function: input_register, "
              f"register: {2 * measured + 2 * i}, data_type: uint32, scale: 0.1}}"
              for i, d in enumerate(("import", "export")[: points - measured])]
    (folder / "maps" / "meter.yaml").write_text("\n".join(meter) + "\n")
    controller = ["protocol: bacnet", "points:"]
    controller += [f"  - {{id: p{k:02d}, unit: °C, kind: measurement, object_type: analog-input, instance: {k + 1}}}"
                   for k in range(points)]
    (folder / "maps" / "controller.yaml").write_text("\n".join(controller) + "\n")
    return folder


def generate(root: Path, devices: int, points: int, period_s: float, site_devices: int, ports: PortPool,
             shares: tuple[float, float, float] = (80, 15, 5)) -> list[Path]:
    """Sites of about `site_devices` devices each, `devices` in all."""
    count = max(1, round(devices / site_devices))
    sizes = [devices // count + (1 if i < devices % count else 0) for i in range(count)]
    return [generate_site(root, f"district-{i:03d}", size, points, period_s, ports, shares)
            for i, size in enumerate(sizes)]


# --------------------------------------------------------------------------------------- roles


async def serve_sites(sites: Sequence[str]) -> None:
    """A simulator process: every device of the sites over its protocol, no physics, until SIGTERM."""
    from sim.core import WallClock
    from sim.site import SiteSimulation

    rng = random.Random(0)
    simulations = [SiteSimulation(site, WallClock(), physics=False) for site in sites]
    for simulation in simulations:
        for device in simulation.devices.values():
            for point_id, spec in device.points.items():
                value = rng.randrange(1, 10**6) if "energy" in point_id else round(rng.uniform(0, 400), 3)
                if getattr(spec, "data_type", "") not in ("bool", "Boolean"):
                    device.set(point_id, value)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    for simulation in simulations:
        await simulation.start()
    print("ready", flush=True)
    await stop.wait()
    for simulation in simulations:
        await simulation.stop()


async def run_instance(sites: Sequence[str], db: str, port: int, baseline: bool, lease_s: float | None = None) -> None:
    """A gridctl process over the sites, as `gridctl run` starts it; `baseline`: the former behaviour
    (one transaction per device poll, every device due at the same instant); `lease_s`: as `gridctl run
    --cluster --lease-s`, sharing the sites with the other instances through site leases."""
    from gridctl import logs
    from gridctl.service.runner import ServiceHost, SiteOptions
    from gridctl.service.web import attach_api, serve_until_stopped

    logs.configure("warning")
    if baseline:
        import drivers.poller

        drivers.poller.stable_phase = lambda key, period_s: 0.0
    cluster = None
    if lease_s is not None:
        from gridctl.cluster.coordinator import ClusterSettings

        cluster = ClusterSettings(lease_s=lease_s, renew_s=lease_s / 4)
    host = ServiceHost([SiteOptions(site=Path(s)) for s in sites], db, Path(os.environ["GRIDCTL_DATA_DIR"]) / "spool",
                       cluster=cluster)
    if baseline:
        from gridctl.history.recorder import Recorder

        host.recorder = Recorder(host.historian, host.spool, clock=host.clock.now, on_status=host._history_status,
                                 flush_window_s=0.0,
                                 group_max_readings=1)
        for service in host.sites:
            service.controller.history.recorder = host.recorder
    await host.open_history()
    app = await attach_api(host)
    await serve_until_stopped(host, app, "127.0.0.1", port, announce=lambda: print("ready", flush=True))


# --------------------------------------------------------------------------------------- measuring


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its waited-for children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def _rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every core since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _postgres_pids(datadir: Path) -> list[int]:
    postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    return pids


def _scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        return response.read()


def _gauge(body: bytes, name: str, label: str) -> float:
    match = re.search(rf'^{name}{{what="{label}"}} (\S+)$'.encode(), body, re.M)
    return float(match.group(1)) if match else 0.0


def _lateness_buckets(body: bytes) -> dict[float, float]:
    """Cumulative counts of poll lateness by upper bound, all protocols summed."""
    buckets: dict[float, float] = {}
    for bound, count in re.findall(rb'^gridctl_poll_lateness_seconds_bucket{le="([^"]+)",[^}]*} (\S+)$', body, re.M):
        key = float(bound)
        buckets[key] = buckets.get(key, 0.0) + float(count)
    return buckets


def _quantile_bound(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    bounds = sorted(after)
    if not bounds:
        return None
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    if total <= 0:
        return None
    for bound in bounds:
        if after[bound] - before.get(bound, 0.0) >= q * total:
            return bound
    return bounds[-1]


@dataclass
class Run:
    label: str
    instances: int
    baseline: bool
    devices: int
    points: int
    poll_period_s: float
    sites: int
    readings_expected_per_s: float = 0.0
    readings_stored_per_s: float = 0.0
    stored_ratio: float = 0.0
    poll_interval_p50_s: float | None = None
    poll_interval_p99_s: float | None = None
    devices_not_stored: int = 0
    poll_lateness_p99_s: float | None = None
    cpu_s_per_1000_readings: float | None = None
    gridctl_cpu_cores: list[float] = field(default_factory=list)
    simulator_cpu_cores: list[float] = field(default_factory=list)
    postgres_cpu_cores: float = 0.0
    machine_busy_cores: float = 0.0
    # What else kept the machine busy meanwhile (other programs on a shared machine).
    other_cpu_cores: float = 0.0
    rss_mb: float = 0.0
    max_spool_depth: float = 0.0
    max_pending_readings: float = 0.0
    metrics_bytes: int = 0
    commits_per_s: float = 0.0
    ok: bool = False
    saturates: str | None = None
    sharing: str = "explicit"
    # With site leases: the number of sites each owning instance held at the end of the window.
    sites_per_owner: list[int] = field(default_factory=list)


def _verdict(run: Run, cores: int) -> None:
    run.ok = run.stored_ratio >= 0.99 and (run.poll_interval_p99_s or 1e9) < 1.2 * run.poll_period_s
    if run.ok:
        return
    reasons = []
    if max(run.gridctl_cpu_cores, default=0) >= 0.85:
        reasons.append(f"gridctl process at {max(run.gridctl_cpu_cores):.0%} of its one core (event loop)")
    if max(run.simulator_cpu_cores, default=0) >= 0.85:
        reasons.append(f"simulator process at {max(run.simulator_cpu_cores):.0%} of a core")
    if run.postgres_cpu_cores >= 0.8:
        reasons.append(f"PostgreSQL at {run.postgres_cpu_cores:.2f} cores")
    if run.max_spool_depth > 0:
        reasons.append(f"history writes timed out and fell back on the spool ({run.max_spool_depth:.0f} readings "
                       f"deep, PostgreSQL at {run.postgres_cpu_cores:.2f} cores)")
    if run.machine_busy_cores >= 0.92 * cores:
        # What gridctl would have needed, from its cost per reading, is only told when it stored enough to know.
        needed = (f" needed about {(run.cpu_s_per_1000_readings or 0) * run.readings_expected_per_s / 1000:.2f} "
                  "cores for the load and") if run.stored_ratio >= 0.5 else ""
        reasons.append(f"the machine's {cores} cores: gridctl{needed} got {sum(run.gridctl_cpu_cores):.2f}, "
                       f"the simulators took {sum(run.simulator_cpu_cores):.2f}, PostgreSQL "
                       f"{run.postgres_cpu_cores:.2f} and other programs {run.other_cpu_cores:.2f}")
    run.saturates = "; ".join(reasons) or "unclear: no process at its limit (see the figures)"


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        # gridctl first (started last), then the simulators it polls.
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _spawn(args: list[str], env: dict[str, str], log_path: Path, started: list[subprocess.Popen]
           ) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                               stderr=log_path.open("w"), text=True, env=env, cwd=REPO)
    started.append(process)
    return process


def _wait_ready(processes: Sequence[subprocess.Popen], timeout_s: float, logs: Sequence[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    for process, log_path in zip(processes, logs, strict=True):
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if line.strip() == "ready":
                break
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"{process.args[2:4]} did not start:\n{log_path.read_text()[-3000:]}")


def measure(cluster, work: Path, run: Run, args: argparse.Namespace, ports: PortPool) -> Run:
    import psycopg

    dbname = re.sub(r"\W", "_", run.label)
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname}")
        conn.execute(f"CREATE DATABASE {dbname}")
    dsn = cluster.dsn_for(dbname)
    root = work / run.label
    sites = generate(root, run.devices, run.points, run.poll_period_s, args.site_devices, ports, args.shares)
    run.sites = len(sites)
    run.readings_expected_per_s = run.devices * run.points / run.poll_period_s
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    with _processes() as started:
        sim_groups = [sites[i::args.simulators] for i in range(min(args.simulators, len(sites)))]
        logs = REPO / "artifacts" / "scale" / run.label
        logs.mkdir(parents=True, exist_ok=True)
        sim_logs = [logs / f"sim-{i}.log" for i in range(len(sim_groups))]
        sims = [_spawn(["serve", *map(str, group)], env, path, started)
                for group, path in zip(sim_groups, sim_logs, strict=True)]
        _wait_ready(sims, 600, sim_logs)
        shares = assign_sites(sites, run.instances, run.sharing)
        http_ports = [ports.take("tcp") for _ in shares]
        gridctl_logs = [logs / f"gridctl-{i}.log" for i in range(len(shares))]
        instances = []
        for i, share in enumerate(shares):
            data = root / f"instance-{i}"
            data.mkdir()
            extra = ["--baseline"] if run.baseline else []
            if run.sharing == "leases":
                extra += ["--cluster-lease-s", str(args.lease_s)]
            instances.append(_spawn(["instance", "--db", dsn, "--port", str(http_ports[i]), *extra,
                                     *map(str, share)], dict(env, GRIDCTL_DATA_DIR=str(data)),
                                    gridctl_logs[i], started))
        _wait_ready(instances, 600, gridctl_logs)
        log.info("%s: %d devices on %d sites, warming up %.0f s", run.label, run.devices, len(sites), args.warmup_s)
        time.sleep(args.warmup_s)
        pg_pids = _postgres_pids(cluster.datadir)
        gridctl_pids = [p.pid for p in instances]
        sim_pids = [p.pid for p in sims]
        before = {pid: _cpu_s(pid) for pid in [*gridctl_pids, *sim_pids, *pg_pids]}
        busy0, total0 = _machine_busy()
        scrapes0 = [_scrape(port) for port in http_ports]
        t0 = datetime.now(UTC)
        mono0 = time.monotonic()
        while time.monotonic() - mono0 < args.measure_s:
            time.sleep(min(5.0, args.measure_s - (time.monotonic() - mono0)))
            for port in http_ports:
                body = _scrape(port)
                run.metrics_bytes = max(run.metrics_bytes, len(body))
                run.max_spool_depth = max(run.max_spool_depth, _gauge(body, "gridctl_history", "spool_depth"))
                run.max_pending_readings = max(run.max_pending_readings, _gauge(body, "gridctl_history", "pending"))
        elapsed = time.monotonic() - mono0
        t1 = datetime.now(UTC)
        after = {pid: _cpu_s(pid) for pid in before}
        busy1, total1 = _machine_busy()
        scrapes1 = [_scrape(port) for port in http_ports]
        run.rss_mb = round(sum(_rss_mb(pid) for pid in gridctl_pids), 1)
        pg_pids = [pid for pid in _postgres_pids(cluster.datadir) if pid in before]

        def cores(pids: Sequence[int]) -> list[float]:
            return [round((after[pid] - before[pid]) / elapsed, 3) for pid in pids]

        run.gridctl_cpu_cores = cores(gridctl_pids)
        run.simulator_cpu_cores = cores(sim_pids)
        run.postgres_cpu_cores = round(sum(cores(pg_pids)), 3)
        run.machine_busy_cores = round((busy1 - busy0) / (total1 - total0) * os.cpu_count(), 3)
        run.other_cpu_cores = round(max(0.0, run.machine_busy_cores - sum(run.gridctl_cpu_cores)
                                        - sum(run.simulator_cpu_cores) - run.postgres_cpu_cores), 3)
        commits = sum(_gauge(b, "gridctl_history", "commits") for b in scrapes1) - sum(
            _gauge(b, "gridctl_history", "commits") for b in scrapes0)
        run.commits_per_s = round(commits / elapsed, 1)
        lateness0: dict[float, float] = {}
        lateness1: dict[float, float] = {}
        for body in scrapes0:
            for k, v in _lateness_buckets(body).items():
                lateness0[k] = lateness0.get(k, 0.0) + v
        for body in scrapes1:
            for k, v in _lateness_buckets(body).items():
                lateness1[k] = lateness1.get(k, 0.0) + v
        run.poll_lateness_p99_s = _quantile_bound(lateness0, lateness1, 0.99)
        # Polls of the window still being committed are counted once they are in.
        time.sleep(min(run.poll_period_s + 5, 30))
        if run.sharing == "leases":
            run.sites_per_owner = _sites_per_owner(dsn)
    stored_readings = _stored(dsn, run, t0, t1)
    cpu = sum(after[pid] - before[pid] for pid in gridctl_pids)
    run.cpu_s_per_1000_readings = round(cpu / (stored_readings / 1000), 4) if stored_readings else None
    _verdict(run, os.cpu_count() or 1)
    return run


def _stored(dsn: str, run: Run, t0: datetime, t1: datetime) -> int:
    import psycopg

    window_s = (t1 - t0).total_seconds()
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM readings WHERE ts >= %s AND ts < %s", [t0, t1]).fetchone()[0]
        # One point per device: every point of a poll carries the poll's time.
        p50, p99, devices = conn.execute(
            """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap), percentile_cont(0.99) WITHIN GROUP
               (ORDER BY gap), count(DISTINCT point_id)
               FROM (SELECT r.point_id, extract(epoch FROM r.ts - lag(r.ts) OVER (PARTITION BY r.point_id
                     ORDER BY r.ts)) AS gap
                     FROM readings AS r JOIN points AS p ON p.id = r.point_id
                     WHERE p.address LIKE '%%/p00' AND r.ts >= %s AND r.ts < %s) AS g
               WHERE gap IS NOT NULL""", [t0 - timedelta(seconds=2 * run.poll_period_s), t1]).fetchone()
    run.readings_stored_per_s = round(stored / window_s, 1)
    run.stored_ratio = round(run.readings_stored_per_s / run.readings_expected_per_s, 4)
    run.poll_interval_p50_s = round(p50, 3) if p50 is not None else None
    run.poll_interval_p99_s = round(p99, 3) if p99 is not None else None
    run.devices_not_stored = run.devices - devices
    return stored


def assign_sites(sites: Sequence[Path], instances: int, sharing: str) -> list[list[Path]]:
    """Which sites each instance is given. `explicit`: each its own share of the folders; `leases`: every
    instance every site (they share them through site leases)."""
    if sharing == "leases":
        return [list(sites) for _ in range(instances)]
    return [list(sites[i::instances]) for i in range(instances)]


def _sites_per_owner(dsn: str) -> list[int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT owner, count(*) FROM site_leases WHERE expires_at > clock_timestamp() "
                            "GROUP BY owner").fetchall()
    return sorted((int(n) for _owner, n in rows), reverse=True)


# --------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    serve = sub.add_parser("serve")
    serve.add_argument("sites", nargs="+")
    instance = sub.add_parser("instance")
    instance.add_argument("--db", required=True)
    instance.add_argument("--port", type=int, required=True)
    instance.add_argument("--baseline", action="store_true")
    instance.add_argument("--cluster-lease-s", type=float, default=None, help="share the sites through site leases")
    instance.add_argument("sites", nargs="+")
    parser.add_argument("--quick", action="store_true", help="two short runs at 1,000 devices, under 3 minutes")
    parser.add_argument("--steps", default="1000,2500,5000,7500,10000", help="device counts to step through")
    parser.add_argument("--points", type=int, default=18)
    parser.add_argument("--period", type=float, default=5.0)
    parser.add_argument("--instances", default="1,2", help="instance counts to try, e.g. 1,2")
    parser.add_argument("--sharing", choices=("explicit", "leases"), default="explicit",
                        help="explicit: each instance its share of the sites; leases: every instance every site, "
                             "shared through site leases (gridctl run --cluster)")
    parser.add_argument("--lease-s", type=float, default=20.0, help="site lease with --sharing leases")
    parser.add_argument("--mix", default="80,15,5", help="shares of Modbus, BACnet and OPC-UA devices")
    parser.add_argument("--site-devices", type=int, default=500, help="devices per generated site")
    parser.add_argument("--simulators", type=int, default=2, help="simulator processes")
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--measure-s", type=float, default=60.0)
    parser.add_argument("--baseline-at", default="2500", help="device counts to measure the former behaviour at")
    parser.add_argument("--all-steps", action="store_true", help="go on stepping past the first saturated step")
    args = parser.parse_args()
    if args.role == "serve":
        asyncio.run(serve_sites(args.sites))
        return
    if args.role == "instance":
        asyncio.run(run_instance(args.sites, args.db, args.port, args.baseline, args.cluster_lease_s))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.quick:
        # With site leases, one instance and then two share the same sites.
        args.steps, args.baseline_at = "1000", "1000"
        args.instances = "1,2" if args.sharing == "leases" else "1"
        args.warmup_s, args.measure_s = 10.0, 20.0
    steps = [int(s) for s in args.steps.split(",") if s]
    args.shares = tuple(float(x) for x in args.mix.split(","))
    if len(args.shares) != 3 or min(args.shares) < 0 or sum(args.shares) <= 0:
        parser.error("--mix takes three non-negative shares: Modbus,BACnet,OPC-UA")
    baseline_at = [int(s) for s in args.baseline_at.split(",") if s]
    from pgcluster import PgCluster

    cluster = PgCluster.create()
    ports = PortPool()
    runs: list[Run] = []
    saturation: dict[str, dict] = {}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="gridctl-scale-") as tmp:
            work = Path(tmp)
            counts = [int(i) for i in args.instances.split(",")]
            for devices in baseline_at:
                run = Run(f"baseline_x{counts[0]}_{devices}", counts[0], True, devices, args.points, args.period, 0)
                runs.append(measure(cluster, work, run, args, ports))
                log.info("%s", json.dumps(asdict(runs[-1])))
            for instances in counts:
                for devices in steps:
                    suffix = "_leases" if args.sharing == "leases" else ""
                    run = Run(f"x{instances}_{devices}{suffix}", instances, False, devices, args.points, args.period,
                              0, sharing=args.sharing)
                    runs.append(measure(cluster, work, run, args, ports))
                    log.info("%s", json.dumps(asdict(runs[-1])))
                    if not run.ok:
                        saturation[f"{instances}_instance"] = {"devices": devices, "saturates": run.saturates}
                        if not args.all_steps:
                            break
                held = [r.devices for r in runs if r.instances == instances and not r.baseline and r.ok]
                saturation.setdefault(f"{instances}_instance", {})["held_devices"] = max(held, default=0)
    finally:
        cluster.remove()
    print(json.dumps({
        "bench": "scale", "points": args.points, "poll_period_s": args.period, "cores": os.cpu_count(),
        "mix": {"modbus": args.shares[0] / sum(args.shares), "bacnet": args.shares[1] / sum(args.shares),
                "opcua": args.shares[2] / sum(args.shares),
                "modbus_units_per_gateway": UNITS_PER_GATEWAY, "opcua_devices_per_server": DEVICES_PER_OPCUA_SERVER},
        "elapsed_s": round(time.monotonic() - started, 1),
        "runs": [asdict(r) for r in runs],
        "saturation": saturation,
    }))


if __name__ == "__main__":
    main()
