"""`gridctl points read|write` on a small site whose devices are simulated in this process, over Modbus TCP and
BACnet/IP on loopback: full-precision tables, JSON errors, operator priorities and the audit of every write."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from gridctl.config import load_site
from gridctl.fieldbus import device_spec
from gridctl.history import open_historian
from sim.bacnet_server import BacnetSimServer, sim_device
from sim.core import SimDevice, WallClock
from sim.modbus_server import SimModbusServer
from tests.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 120.0

SITE = """\
id: audit-test
name: Audit test site
timezone: Europe/Paris
location: {{latitude: 50.63, longitude: 3.06}}
grid:
  import_limit_kw: 100
  export_limit_kw: 50
  subscribed_power_kw: 80
  points: {{power: meter/power, import_energy: meter/import-energy}}
tariff: {{kind: base, base_price_eur_per_kwh: 0.1952}}
devices:
  - id: meter
    protocol: modbus
    host: 127.0.0.1
    port: {modbus_port}
    unit_id: 1
    timeout_s: 5
    points:
      - {{id: power, unit: kW, kind: measurement, function: input_register, register: 0, data_type: float32}}
      - {{id: import-energy, unit: kWh, kind: energy_counter, function: input_register, register: 2,
          data_type: uint32, scale: 0.01}}
      - {{id: export-limit, unit: kW, kind: setpoint, function: holding_register, register: 10, data_type: uint16,
          writable: true, min: 0, max: 50}}
  - id: ahu
    protocol: bacnet
    address: "{bacnet_address}"
    device_instance: 2101
    timeout_s: 5
    points:
      - {{id: zone-setpoint, unit: °C, kind: setpoint, object_type: analog-value, instance: 1, writable: true,
          min: 15, max: 26}}
      - {{id: night-setback, unit: °C, kind: setpoint, object_type: analog-value, instance: 2, writable: true,
          min: 10, max: 20}}
"""


@dataclass
class Rig:
    site_dir: Path
    data_dir: Path
    meter: SimDevice
    ahu: SimDevice
    bacnet: BacnetSimServer

    async def gridctl(self, *args: str) -> tuple[int, str, str]:
        env = {**os.environ, "GRIDCTL_DATA_DIR": str(self.data_dir)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gridctl.cli", *args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def points(self, *args: str) -> tuple[int, str, str]:
        return await self.gridctl("points", args[0], str(self.site_dir), *args[1:])


async def _history_database(path: Path) -> None:
    """A history database with its schema, as `gridctl db upgrade` makes it."""
    async with open_historian(str(path)) as historian:
        await historian.upgrade()


def _write_site(site_dir: Path, modbus_port: int, bacnet_address: str) -> None:
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / "site.yaml").write_text(SITE.format(modbus_port=modbus_port, bacnet_address=bacnet_address))


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    # The specs first (any port will do), then the site again with where the simulators listen.
    draft = tmp_path / "draft"
    _write_site(draft, 502, "127.0.0.1:47808")
    site = load_site(draft)
    meter = SimDevice(device_spec(site.device("meter")), WallClock(),
                      {"power": 12.5, "import-energy": 9_876_543.21, "export-limit": 20})
    ahu = sim_device(device_spec(site.device("ahu")))
    ahu.set("zone-setpoint", 20.0)
    ahu.set("night-setback", 16.0)
    async with SimModbusServer([meter]) as modbus, BacnetSimServer(ahu, plain_objects={"night-setback"}) as bacnet:
        _write_site(tmp_path / "site", modbus.port, bacnet.address)
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        yield Rig(tmp_path / "site", data_dir, meter, ahu, bacnet)


def _audit_rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM write_audit ORDER BY id")]


async def test_tables_keep_every_digit_of_a_large_counter(rig: Rig) -> None:
    code, out, err = await rig.points("read", "meter/import-energy", "meter/power")
    assert code == 0, err
    header, energy, power = out.splitlines()
    assert header == "site audit-test"
    assert "9876543.21 kWh" in energy and "e+" not in energy
    assert "12.5 kW" in power
    code, out, _ = await rig.points("read", "meter/import-energy", "--json")
    assert code == 0 and json.loads(out)[0]["value"] == pytest.approx(9_876_543.21, abs=1e-6)


async def test_json_failures_are_json_on_stdout_with_a_non_zero_exit(rig: Rig) -> None:
    code, out, err = await rig.points("read", "meter/voltage", "--json")
    assert code == 2
    failure = json.loads(out)
    assert "has no point 'voltage'" in failure["error"] and failure["exit_code"] == 2
    assert "has no point 'voltage'" in err
    code, out, err = await rig.gridctl("points", "read", str(rig.site_dir / "nowhere"), "meter", "--json")
    assert code == 2 and json.loads(out)["error"] and err
    # A write refused before any I/O says so in JSON too, with its audit.
    code, out, _ = await rig.points("write", "meter/export-limit", "70", "--json")
    failure = json.loads(out)
    assert code == 2 and "outside the limits" in failure["error"]
    assert failure["audit"]["outcome"] == "rejected" and failure["audit"]["requested_value"] == 70


async def test_operator_priorities_are_refused_unless_an_operator_names_themselves(rig: Rig) -> None:
    db = rig.data_dir / "history.sqlite3"
    await _history_database(db)
    writes = rig.bacnet.requests["write-property"]
    code, out, err = await rig.points("write", "ahu/zone-setpoint", "18", "--priority", "8", "--db", str(db))
    assert code == 2
    assert "priority 8 belongs to life safety and operators; use 9-16" in err and "--as-operator" in err
    assert rig.bacnet.requests["write-property"] == writes and rig.ahu.priority_array("zone-setpoint")[7] is None
    assert f"audit: rejected by {getpass.getuser()}" in out

    code, out, err = await rig.points("write", "ahu/zone-setpoint", "18", "--priority", "8",
                                      "--as-operator", "Anna Martin", "--reason", "frost protection test",
                                      "--db", str(db), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["priority"] == 8 and result["read_back"] == 18.0
    assert rig.ahu.priority_array("zone-setpoint")[7] == 18.0
    assert result["audit"]["actor"] == "Anna Martin" and result["audit"]["stored_in"] == str(db)

    refused, written = _audit_rows(db)
    assert (refused["outcome"], refused["actor"], refused["priority"]) == ("rejected", getpass.getuser(), 8)
    assert "belongs to life safety" in refused["error"]
    assert (written["outcome"], written["actor"], written["priority"]) == ("written", "Anna Martin", 8)
    assert written["reason"] == "frost protection test (as operator)"
    assert json.loads(written["old_value"]) == 20.0 and json.loads(written["read_back"]) == 18.0
    assert written["site_id"] == "audit-test" and written["address"] == "ahu/zone-setpoint"


async def test_every_write_is_audited_in_the_output_and_the_default_database(rig: Rig) -> None:
    # No --db and no default database: the audit is in the output only, and says so.
    code, out, err = await rig.points("write", "meter/export-limit", "30")
    assert code == 0, err
    result, audit_line = out.splitlines()
    assert result.startswith("audit-test meter/export-limit := 30 kW; read back 30 kW")
    assert audit_line.startswith(f"audit: written by {getpass.getuser()} at ")
    assert audit_line.endswith("reason: manual write from the command line")
    assert "not recorded in a database" in audit_line
    assert rig.meter.get("export-limit") == 30

    # Once the default database exists, writes are recorded there.
    default = rig.data_dir / "gridctl.sqlite3"
    await _history_database(default)
    code, out, err = await rig.points("write", "ahu/night-setback", "14")
    assert code == 0, err
    assert "without priority (the object is not commandable)" in out and f"recorded in {default}" in out
    assert rig.ahu.writes[-1][1:] == ("night-setback", 14.0, None)
    # The object has no priority array: nothing to relinquish, refused before a NULL is sent.
    writes = rig.bacnet.requests["write-property"]
    code, out, err = await rig.points("write", "ahu/night-setback", "relinquish")
    assert code == 1 and "not commandable" in err and "audit: rejected" in out
    assert rig.bacnet.requests["write-property"] == writes and rig.ahu.get("night-setback") == 14.0
    rows = _audit_rows(default)
    assert [(r["address"], r["outcome"], r["priority"]) for r in rows] == [
        ("ahu/night-setback", "written", None), ("ahu/night-setback", "rejected", 10)]
    assert all(r["actor"] == getpass.getuser() for r in rows)


async def test_an_audit_database_that_cannot_take_the_audit_stops_the_write(rig: Rig) -> None:
    missing = rig.data_dir / "nowhere.sqlite3"
    code, out, err = await rig.points("write", "meter/export-limit", "40", "--db", str(missing), "--json")
    assert code == 2 and "cannot audit the write, so nothing was written" in err
    assert json.loads(out)["exit_code"] == 2
    assert rig.meter.get("export-limit") == 20
    assert not missing.exists()


@pytest.mark.timescale
async def test_a_write_during_a_database_outage_is_journalled_and_stored_once_it_is_back(
        rig: Rig, timescale: PgCluster, timescale_db: str) -> None:
    async with open_historian(timescale_db) as historian:
        await historian.upgrade()
    code, out, err = await rig.points("write", "meter/export-limit", "30", "--db", timescale_db)
    assert code == 0 and "recorded in" in out, err

    timescale.stop()
    try:
        # The database is away: the device is written all the same, the audit waits in the local journal.
        code, out, err = await rig.points("write", "meter/export-limit", "35", "--db", timescale_db, "--json")
        assert code == 0, err
        assert rig.meter.get("export-limit") == 35
        result = json.loads(out)
        assert result["audit"]["stored_in"] is None and "kept in the write journal" in result["audit"]["store_error"]
        assert "stored by the next `gridctl points write`" in err
    finally:
        timescale.start()

    # The next write to that database stores both, each once, in order.
    code, out, err = await rig.points("write", "meter/export-limit", "40", "--db", timescale_db)
    assert code == 0 and "recorded in" in out, err
    with psycopg.connect(timescale_db) as conn:
        rows = conn.execute("SELECT written_value, outcome, action, instance_id, journal_seq FROM write_audit "
                            "ORDER BY journal_seq").fetchall()
    assert [(json.loads(r[0]), r[1], r[2]) for r in rows] == [(30, "written", "write"), (35, "written", "write"),
                                                               (40, "written", "write")]
    assert len({r[3] for r in rows}) == 1 and [r[4] for r in rows] == [1, 2, 3]
