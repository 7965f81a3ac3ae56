"""API benchmark: residents' daily and hourly consumption queries over one year of 1-minute meter data.

    .venv/bin/python bench/api.py [--dwellings 200] [--days 365] [--clients 50] [--rate 500] [--duration 30]
                                  [--workers 2] [--hourly-days 1] [--db timescale|sqlite]

Builds the history (a year of 1-minute counter readings per dwelling, written by binary COPY and rolled
up by the historian's own refresh) in a throwaway TimescaleDB cluster (the test suite's cluster class)
or a SQLite file, issues one resident token per dwelling with consent for the load curve, serves the API
with uvicorn (`--workers` processes sharing one port) and drives it from this process with `--clients`
keep-alive HTTP/1.1 connections, each a resident alternating a daily query over the last 365 days and an
hourly query over the last `--hourly-days` days: first as fast as the answers come (the most the server
does), then paced at `--rate` requests/s together, latencies counted from each scheduled send time. The
last line printed is one JSON object; its top-level requests_per_s, p50_ms and p99_ms are the paced run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from gridctl.api import ApiSettings, create_app  # noqa: E402
from gridctl.api.db import open_database  # noqa: E402
from gridctl.api.store import ApiStore, Purpose, Role  # noqa: E402
from gridctl.config.models import Site  # noqa: E402
from gridctl.history import is_postgres_dsn, open_historian  # noqa: E402

SITE_ID = "bench"
TIMEZONE = "Europe/Paris"
WEEK_MINUTES = 7 * 1440


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_site(dwellings: int) -> Site:
    """A site of `dwellings` dwellings in four buildings, each metered by one point of a Modbus gateway."""
    return Site.model_validate({
        "id": SITE_ID, "name": "Benchmark", "timezone": TIMEZONE,
        "location": {"latitude": 50.63, "longitude": 3.06},
        "grid": {"import_limit_kw": 500, "export_limit_kw": 100, "subscribed_power_kw": 400},
        "tariff": {"kind": "hp_hc", "peak_price_eur_per_kwh": 0.2081, "offpeak_price_eur_per_kwh": 0.1635,
                   "offpeak_windows": [{"start": "22:00", "end": "06:00"}]},
        "buildings": [{"id": f"b{b}", "use": "residential"} for b in range(4)],
        "devices": [{
            "id": "meters", "protocol": "modbus", "host": "127.0.0.1", "port": 502,
            "points": [{"id": f"d{k:03d}", "unit": "kWh", "kind": "energy_counter", "function": "input_register",
                        "register": 2 * k, "data_type": "uint32", "scale": 0.01} for k in range(dwellings)],
        }],
        "dwellings": [{"id": f"d{k:03d}", "building": f"b{k % 4}", "floor_area_m2": 60, "meter": f"meters/d{k:03d}"}
                      for k in range(dwellings)],
    })


def kwh_per_hour(k: int) -> float:
    return 0.3 + 0.002 * k


# --------------------------------------------------------------------------- history


# PostgreSQL's binary COPY: a header, then per row the field count and each field's length and bytes.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
COPY_ROW = [("fields", ">i2"), ("ts_len", ">i4"), ("ts", ">i8"), ("id_len", ">i4"), ("id", ">i4"),
            ("value_len", ">i4"), ("value", ">f8"), ("quality_len", ">i4"), ("quality", ">i2")]
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def generate_timescale(dsn: str, ids: list[int], start: datetime, minutes: int, part: int, parts: int) -> None:
    """Every `parts`-th week of 1-minute counter readings, by binary COPY (numpy-built rows)."""
    import numpy as np

    start_us = int((start - PG_EPOCH).total_seconds()) * 1_000_000
    rates = np.array([kwh_per_hour(k) for k in range(len(ids))])
    with psycopg.connect(dsn, autocommit=True) as conn:
        for lo in range(part * WEEK_MINUTES, minutes, parts * WEEK_MINUTES):
            m = np.arange(lo, min(lo + WEEK_MINUTES, minutes), dtype=np.int64)
            rows = np.empty(len(ids) * len(m), dtype=COPY_ROW)
            rows["fields"], rows["ts_len"], rows["id_len"], rows["value_len"], rows["quality_len"] = 4, 8, 4, 8, 2
            rows["ts"] = np.tile(start_us + m * 60_000_000, len(ids))
            rows["id"] = np.repeat(np.array(ids, dtype=np.int32), len(m))
            rows["value"] = (rates[:, None] * m[None, :] / 60.0).ravel()
            rows["quality"] = 0
            with conn.cursor().copy("COPY readings (ts, point_id, value, quality) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_HEADER)
                copy.write(rows.tobytes())
                copy.write(COPY_TRAILER)


def generate_sqlite(path: str, ids: list[int], start_us: int, minutes: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for k, point_id in enumerate(ids):
        conn.execute(
            "WITH RECURSIVE r(m) AS (SELECT 0 UNION ALL SELECT m + 1 FROM r WHERE m + 1 < ?) "
            "INSERT INTO readings (point_id, ts, value, quality) SELECT ?, ? + m * 60000000, ? * m / 60.0, 0 FROM r",
            [minutes, point_id, start_us, kwh_per_hour(k)],
        )
    conn.execute("COMMIT")
    conn.close()


async def build_history(target: str, site: Site, start: datetime, minutes: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    historian = open_historian(target)
    await historian.open()
    try:
        await historian.upgrade()
        await historian.sync_site(site)
        addresses = [d.meter for d in site.dwellings]
        latest = await historian.latest(site.id, addresses[:1])
        if latest:
            log("history already built")
            return timings
        ids = [historian.catalogue.ids(site.id)[a] for a in addresses]
        started = time.perf_counter()
        end = start + timedelta(minutes=minutes - 1)
        if is_postgres_dsn(target):
            # Two writers, alternate weeks: the two cores both work.
            procs = [multiprocessing.get_context("spawn").Process(
                target=generate_timescale, args=(target, ids, start, minutes, part, 2)) for part in range(2)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
                if p.exitcode:
                    raise RuntimeError("generating readings failed")
            with psycopg.connect(target, autocommit=True) as conn:
                conn.execute("INSERT INTO rollup_dirty (point_id, first_ts, last_ts) "
                             "SELECT unnest(%s::int[]), %s, %s", [ids, start, end])
                conn.execute("ANALYZE readings")
        else:
            start_us = int(start.timestamp() * 1_000_000)
            await historian.close()
            await asyncio.to_thread(generate_sqlite, target, ids, start_us, minutes)
            await historian.open()
            db = open_database(target)
            await db.open()
            await db.execute("INSERT INTO rollup_dirty (point_id, first_ts, last_ts) "
                             "SELECT value, ?, ? FROM json_each(?)",
                             [start_us, start_us + (minutes - 1) * 60_000_000, json.dumps(ids)])
            await db.close()
        timings["generate_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        # The historian marks what it ingests for the rollup refresh; readings generated in the database are
        # marked above, and the historian's own refresh rolls them up.
        await historian.refresh_rollups()
        timings["rollup_s"] = round(time.perf_counter() - started, 1)
    finally:
        await historian.close()
    return timings


async def issue_tokens(target: str, site: Site, now: datetime) -> list[tuple[str, str]]:
    db = open_database(target)
    await db.open()
    store = ApiStore(db)
    tokens = []
    try:
        for dwelling in site.dwellings:
            user, token = await store.add_user(f"resident-{dwelling.id}-{now.timestamp():.0f}", Role.RESIDENT,
                                               [f"{SITE_ID}/{dwelling.id}"], now, timedelta(days=1))
            await store.record_consent(user, SITE_ID, dwelling.id, Purpose.LOAD_CURVE, True, now)
            tokens.append((dwelling.id, token))
    finally:
        await db.close()
    return tokens


# --------------------------------------------------------------------------- server


def serve(target: str, dwellings: int, port: int, ready: Any) -> None:
    import uvicorn

    async def main() -> None:
        historian = open_historian(target, pool_max_size=8) if is_postgres_dsn(target) else open_historian(target)
        await historian.open()
        unlimited = ApiSettings(rate_per_second=1e6, rate_burst=10**6, address_rate_per_second=1e6,
                                address_rate_burst=10**6)
        app = create_app(historian, {}, unlimited,
                         sites={SITE_ID: bench_site(dwellings)})
        # IPPROTO_TCP explicitly: asyncio turns Nagle off only on sockets that say they are TCP, and with
        # Nagle on, a response written in two parts waits for the client's delayed ACK (~40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, backlog=1024))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(6000):
            if server.started:
                break
            await asyncio.sleep(0.01)
        ready.set()
        await task
        await historian.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- load


def cpu_seconds(match: Any) -> float:
    """CPU time (user + system) of the processes whose /proc entry `match(pid, cmdline)` accepts."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if match(int(entry), cmdline):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Connection:
    """One keep-alive HTTP/1.1 connection: a minimal client so that the load generator costs little CPU."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, token: str) -> tuple[int, int]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = dict(line.lower().partition(": ")[::2] for line in lines[1:] if line)
        length = int(headers["content-length"])
        body = await self.reader.readexactly(length)
        return status, len(body)


async def drive(port: int, tokens: list[tuple[str, str]], clients: int, duration_s: float, warmup_s: float,
                today: date, hourly_days: int, rate: float) -> dict[str, Any]:
    """`clients` residents on keep-alive connections, alternating daily and hourly queries.

    rate = 0: each sends its next request as soon as the last is answered (the most the server does).
    rate > 0: together they send `rate` requests/s on a fixed timetable; a latency counts from the
    scheduled send time, so time spent waiting behind a slow answer is not hidden.
    """
    daily_path = f"consumption?start={today - timedelta(days=365)}&end={today}"
    hourly_path = f"consumption?resolution=hour&start={today - timedelta(days=hourly_days)}&end={today}"
    samples: dict[str, list[float]] = {"day": [], "hour": []}
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    begin = loop.time()
    measure_from, measure_to = begin + warmup_s, begin + warmup_s + duration_s
    interval = clients / rate if rate > 0 else 0.0

    async def client(n: int) -> None:
        dwelling, token = tokens[n % len(tokens)]
        connection = Connection(port)
        rng = random.Random(n)
        kind = rng.choice(["day", "hour"])
        scheduled = begin + rng.random() * interval
        while True:
            now = loop.time()
            if now >= measure_to:
                break
            if interval:
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)
                sent = scheduled
                scheduled += interval
            else:
                sent = now
            path = f"/api/v1/me/dwellings/{SITE_ID}/{dwelling}/" + (daily_path if kind == "day" else hourly_path)
            status, _size = await connection.get(path, token)
            answered = loop.time()
            if status != 200:
                errors.append(f"{status} for {path}")
            if measure_from <= sent and answered <= measure_to:
                samples[kind].append(answered - sent)
            kind = "hour" if kind == "day" else "day"

    await asyncio.gather(*(client(n) for n in range(clients)))
    everything = samples["day"] + samples["hour"]
    return {
        "offered_requests_per_s": rate or None,
        "requests": len(everything),
        "requests_per_s": round(len(everything) / duration_s, 1),
        "all": percentiles(everything),
        "daily": {"query": daily_path.split("?")[1], **percentiles(samples["day"])},
        "hourly": {"query": hourly_path.split("?")[1], **percentiles(samples["hour"])},
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"count": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(p99 * 1000, 2)}


def check_values(port: int, tokens: list[tuple[str, str]], today: date) -> None:
    """One day of one dwelling against the generator: the benchmark measures correct answers."""
    import urllib.request

    dwelling, token = tokens[min(7, len(tokens) - 1)]
    day = today - timedelta(days=2)  # wholly inside the history (which covers at least three days)
    path = f"/api/v1/me/dwellings/{SITE_ID}/{dwelling}/consumption?start={day}&end={day + timedelta(days=1)}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    got = body["buckets"][0]["energy_kwh"]
    hours = 23 if day.month == 3 and day.weekday() == 6 and day.day > 24 else 24
    expected = kwh_per_hour(int(dwelling[1:])) * hours
    if got is None or abs(got - expected) > 1e-6:
        raise RuntimeError(f"{dwelling} on {day}: {got} kWh, expected {expected}")


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dwellings", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hourly-days", type=int, default=1)
    parser.add_argument("--rate", type=float, default=500.0,
                        help="requests/s the clients offer together in the paced run (the goal's rate)")
    parser.add_argument("--db", choices=["timescale", "sqlite"], default="timescale")
    args = parser.parse_args()
    if args.days < 3:
        parser.error("--days must be at least 3")

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = args.days * 1440
    start = now - timedelta(minutes=minutes)
    site = bench_site(args.dwellings)
    result: dict[str, Any] = {
        "db": args.db, "dwellings": args.dwellings, "days": args.days, "readings": args.dwellings * minutes,
        "clients": args.clients, "workers": args.workers, "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-api-") as workdir:
        cluster = None
        try:
            if args.db == "timescale":
                from pgcluster import PgCluster

                log("starting the TimescaleDB cluster")
                cluster = PgCluster.create()
                with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                    conn.execute("CREATE DATABASE bench_api")
                target = cluster.dsn_for("bench_api")
            else:
                target = str(Path(workdir) / "history.sqlite")
            log(f"building {args.dwellings} dwellings x {args.days} days of 1-minute readings")
            result.update(asyncio.run(build_history(target, site, start, minutes)))
            tokens = asyncio.run(issue_tokens(target, site, now))

            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            context = multiprocessing.get_context("spawn")
            workers = []
            for _ in range(args.workers):
                ready = context.Event()
                process = context.Process(target=serve, args=(target, args.dwellings, port, ready), daemon=True)
                process.start()
                if not ready.wait(120):
                    raise RuntimeError("an API worker did not start")
                workers.append(process)
            try:
                today = now.astimezone(site.tz).date()
                check_values(port, tokens, today)
                log(f"{args.clients} clients as fast as answered, {args.duration:.0f} s")
                # CPU spent per request by the API workers and the database: what the machine's other load
                # does not change, unlike the rates (this benchmark shares its two cores with everything else).
                worker_pids = {p.pid for p in workers}
                in_api = lambda pid, _cmd: pid in worker_pids  # noqa: E731
                in_db = lambda _pid, cmd: cmd.startswith("postgres: ") and " bench_api " in cmd  # noqa: E731
                before = cpu_seconds(in_api), cpu_seconds(in_db), time.process_time()
                closed = asyncio.run(drive(
                    port, tokens, args.clients, args.duration, args.warmup, today, args.hourly_days, 0.0))
                after = cpu_seconds(in_api), cpu_seconds(in_db), time.process_time()
                total = closed["requests"] * (args.duration + args.warmup) / args.duration
                closed["api_cpu_ms_per_request"] = round((after[0] - before[0]) / total * 1000, 2)
                closed["db_cpu_ms_per_request"] = round((after[1] - before[1]) / total * 1000, 2)
                closed["client_cpu_ms_per_request"] = round((after[2] - before[2]) / total * 1000, 2)
                result["as_fast_as_answered"] = closed
                result["load_average_1min"] = os.getloadavg()[0]
                log(f"{args.clients} clients offering {args.rate:.0f} requests/s, {args.duration:.0f} s")
                paced = asyncio.run(drive(
                    port, tokens, args.clients, args.duration, args.warmup, today, args.hourly_days, args.rate))
                result["paced"] = paced
                result["requests_per_s"] = paced["requests_per_s"]
                result["p50_ms"] = paced["all"].get("p50_ms")
                result["p99_ms"] = paced["all"].get("p99_ms")
            finally:
                for process in workers:
                    process.terminate()
                    process.join(10)
        finally:
            if cluster is not None:
                cluster.remove()
    result["goal"] = {"p99_ms_below": 100, "requests_per_s_at_least": 500,
                      "met": (result.get("p99_ms") or 1e9) < 100 and result.get("requests_per_s", 0) >= 500}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
