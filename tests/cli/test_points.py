"""`gridctl sim up` serving each demonstrator in one process, `gridctl points read|write` talking to it
from others, over the real protocols on loopback."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gridctl.config import load_site
from sim.site import free_port_offset, site_ports

ROOT = Path(__file__).resolve().parents[2]
SITES = ROOT / "sites"
GRIDCTL = [sys.executable, "-m", "gridctl.cli"]
READY_TIMEOUT_S = 90.0
COMMAND_TIMEOUT_S = 120.0
# Per-request timeout for the points commands: generous, so a busy test machine does not fail them.
DEVICE_TIMEOUT = ["--timeout", "10"]


@dataclass(frozen=True)
class Case:
    reads: list[str]
    # (address, value, extra arguments): one per protocol.
    writes: list[tuple[str, str, list[str]]]
    refused: tuple[str, str]
    # A device started with --fault, and one of its points.
    faulty: tuple[str, str]


CASES: dict[str, Case] = {
    "zac-saint-sauveur": Case(
        reads=["grid-meter/power", "battery/soc", "gym-controller/hall-temperature", "street-lighting/photocell-dark",
               "heat-substation/heat-power", "heat-substation/pump-running"],
        writes=[("battery/power-setpoint", "25", []), ("gym-controller/hall-setpoint", "20.5", ["--priority", "12"]),
                ("heat-substation/secondary-supply-setpoint", "62", [])],
        refused=("heat-substation/secondary-supply-setpoint", "90"),
        faulty=("meter-b-24=offline", "meter-b-24/energy"),
    ),
    "zac-union": Case(
        reads=["grid-meter/import-energy", "charger-07/plug-state", "offices-ahu/zone-setpoint",
               "offices-lighting/zone-2-power", "silo-bms/outdoor-temperature", "silo-bms/occupied-spaces"],
        writes=[("charger-05/current-limit", "16", []), ("offices-ahu/zone-setpoint", "22", []),
                ("silo-bms/ventilation-speed", "60", [])],
        refused=("charger-05/current-limit", "40"),
        faulty=("charger-24=exception", "charger-24/power"),
    ),
    "zac-haute-deule": Case(
        reads=["pv-inverter/power", "heat-pump-north/supply-setpoint", "ahu-north/return-temperature",
               "vav-4/zone-temperature", "lighting-south/zone-3-illuminance", "bms/global-irradiance"],
        writes=[("pv-inverter/curtailment-limit", "50", []), ("vav-2/zone-setpoint", "21.5", []),
                ("bms/plant-mode", "heating", [])],
        refused=("ahu-north/zone-setpoint", "30"),
        faulty=("vav-6=exception", "vav-6/zone-temperature"),
    ),
}


def _site_ports(site_name: str) -> list[tuple[str, int]]:
    return site_ports(load_site(SITES / site_name))


@dataclass
class SimProcess:
    site: str
    offset: int
    process: subprocess.Popen[str]
    banner: list[str] = field(default_factory=list)

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return self.process.returncode, out, err


def start_sim(site: str) -> SimProcess:
    offset = free_port_offset(load_site(SITES / site))
    process = subprocess.Popen(
        [*GRIDCTL, "sim", "up", str(SITES / site), "--port-offset", str(offset), "--seed", "3",
         "--fault", CASES[site].faulty[0]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    sim = SimProcess(site, offset, process)
    assert process.stdout is not None
    fd = process.stdout.fileno()
    pending = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    # Raw reads: a buffered readline could swallow the ready line while select waits for more.
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], 1.0)
        if not readable:
            if process.poll() is not None:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            sim.banner.append(line.decode())
            if line.startswith(b"ready:"):
                return sim
    code, out, err = sim.stop()
    raise AssertionError(f"gridctl sim up {site} did not get ready (exit {code}):\n{sim.banner}\n{out}\n{err}")


def gridctl(*args: str) -> subprocess.CompletedProcess[str]:
    if args[0] == "points":
        args = (*args, *DEVICE_TIMEOUT)
    return subprocess.run([*GRIDCTL, *args], capture_output=True, text=True, cwd=ROOT, timeout=COMMAND_TIMEOUT_S)


@pytest.fixture(scope="module", params=list(CASES))
def served(request: pytest.FixtureRequest) -> Iterator[SimProcess]:
    sim = start_sim(request.param)
    yield sim
    sim.stop()


def _read(sim: SimProcess, *addresses: str) -> list[dict]:
    result = gridctl("points", "read", str(SITES / sim.site), *addresses, "--json", "--port-offset", str(sim.offset))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_sim_up_lists_every_device_on_its_shifted_port(served: SimProcess) -> None:
    site = load_site(SITES / served.site)
    served_lines = [line for line in served.banner if not line.startswith(("ready:", "fault"))]
    listed = [line.split()[2:] for line in served_lines]
    devices = [device for devices in listed for device in devices]
    assert sorted(devices) == sorted(d.id for d in site.devices)
    shifted = {port + served.offset for _, port in _site_ports(served.site)}
    listed_ports = {int(urlsplit(f"x://{line.split()[1].removeprefix('opc.tcp://')}").port or 0)
                    for line in served_lines}
    assert listed_ports == shifted


def test_points_read_json_over_each_protocol(served: SimProcess) -> None:
    case = CASES[served.site]
    site = load_site(SITES / served.site)
    readings = _read(served, *case.reads)
    assert [r["address"] for r in readings] == case.reads
    assert {r["site_id"] for r in readings} == {served.site}
    protocols = set()
    for reading in readings:
        point = site.point(reading["address"])
        protocols.add(site.device(reading["address"].split("/")[0]).protocol)
        assert reading["quality"] == "good", reading
        assert reading["unit"] == point.unit
        assert isinstance(reading["value"], int | float | bool)
        assert datetime.fromisoformat(reading["ts"]).tzinfo is not None
    assert protocols == {"modbus", "bacnet", "opcua"}


def test_points_read_a_whole_device_in_text(served: SimProcess) -> None:
    site = load_site(SITES / served.site)
    device = site.devices[0]
    result = gridctl("points", "read", str(SITES / served.site), device.id, "--port-offset", str(served.offset))
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header == f"site {site.id}"
    assert [line.split()[0] for line in lines] == [f"{device.id}/{p.id}" for p in device.points]
    assert all(" good " in line for line in lines)


def test_points_write_reads_back_over_each_protocol(served: SimProcess) -> None:
    site = load_site(SITES / served.site)
    expected_values = {}
    for address, value, extra in CASES[served.site].writes:
        result = gridctl("points", "write", str(SITES / served.site), address, value, *extra, "--json",
                         "--port-offset", str(served.offset))
        assert result.returncode == 0, f"{address}: {result.stdout}{result.stderr}"
        written = json.loads(result.stdout)
        point = site.point(address)
        expected = float(value) if point.states is None else next(k for k, v in point.states.items() if v == value)
        assert written["read_back"] == pytest.approx(expected)
        if extra:
            assert written["priority"] == int(extra[1])
        expected_values[address] = expected
    # Another client sees the new values.
    readings = _read(served, *expected_values)
    assert {r["address"]: r["value"] for r in readings} == pytest.approx(expected_values)


def test_points_write_refuses_a_value_outside_the_limits(served: SimProcess) -> None:
    address, value = CASES[served.site].refused
    (before,) = _read(served, address)
    result = gridctl("points", "write", str(SITES / served.site), address, value, "--port-offset", str(served.offset))
    assert result.returncode != 0
    assert "refused" in result.stderr and "outside the limits" in result.stderr and address in result.stderr
    assert "nothing was written" in result.stderr
    (after,) = _read(served, address)
    assert after["value"] == before["value"]


def test_points_rejects_unknown_addresses_and_read_only_points_before_any_io() -> None:
    # No simulator runs for this one: every refusal comes before anything is sent.
    site_path = str(SITES / "zac-union")
    missing = gridctl("points", "read", site_path, "no-such-device/power")
    assert missing.returncode == 2 and "no device 'no-such-device'" in missing.stderr
    unknown_point = gridctl("points", "read", site_path, "charger-01/voltage")
    assert unknown_point.returncode == 2 and "has no point 'voltage'" in unknown_point.stderr
    read_only = gridctl("points", "write", site_path, "grid-meter/power", "1")
    assert read_only.returncode == 2 and "read-only" in read_only.stderr
    priority = gridctl("points", "write", site_path, "charger-01/current-limit", "10", "--priority", "10")
    assert priority.returncode == 2 and "BACnet points only" in priority.stderr


def test_points_read_reports_a_faulty_device_as_bad(served: SimProcess) -> None:
    address = CASES[served.site].faulty[1]
    healthy = CASES[served.site].reads[0]
    result = gridctl("points", "read", str(SITES / served.site), address, healthy, "--json",
                     "--port-offset", str(served.offset))
    assert result.returncode == 1, "a bad reading makes the exit code non-zero"
    faulty_reading, healthy_reading = json.loads(result.stdout)
    assert faulty_reading["quality"] == "bad" and faulty_reading["value"] is None and faulty_reading["error"]
    assert healthy_reading["quality"] == "good"


def test_sim_up_stops_cleanly_on_ctrl_c(served: SimProcess) -> None:
    code, out, err = served.stop()
    assert code == 0, err
    assert out.strip().endswith("stopped")
    assert "Traceback" not in err
