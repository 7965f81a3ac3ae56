"""The Modbus driver and simulator against third-party Modbus stacks on loopback.

* mbpoll (libmodbus, Debian) reads and writes a simulated meter and agrees with the driver;
* the driver reads and writes a jsmodbus server and a modbus-serial ServerTCP (node scripts in
  tests/peers/ that encode their registers with Node's own Buffer codecs and report what they hold).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modbus_fixtures import METER_POINTS, METER_VALUES, at_port, device_spec, fast_pool, sim_device

from drivers.base import DeviceTimeout, HealthState, NotAttempted, Quality
from drivers.modbus import ModbusDriver, ShortAnswer
from drivers.specs import ModbusPointSpec
from sim.modbus_server import SimModbusServer

pytestmark = pytest.mark.peers

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / "tests" / "peers"
NODE_MODULES = PEERS / "node" / "node_modules"

# One point per data type × layout, with the value the peer stores, for the node servers.
PEER_POINTS: list[dict[str, Any]] = [
    {"id": "voltage_v", "table": "input_register", "address": 0, "type": "float32", "value": 230.5},
    {"id": "power_kw", "table": "input_register", "address": 2, "type": "float32", "word_order": "little",
     "value": -7.25},
    {"id": "current_a", "table": "input_register", "address": 4, "type": "int16", "value": -1234},
    {"id": "frequency_hz", "table": "input_register", "address": 5, "type": "uint16", "value": 5001},
    {"id": "energy_wh", "table": "input_register", "address": 6, "type": "uint32", "value": 4_000_000_123},
    {"id": "export_wh", "table": "input_register", "address": 8, "type": "int32", "word_order": "little",
     "byte_order": "little", "value": -2_000_000_001},
    {"id": "lifetime_wh", "table": "input_register", "address": 20, "type": "uint64", "byte_order": "little",
     "value": "18000000000000000123"},
    {"id": "offset_wh", "table": "input_register", "address": 24, "type": "int64", "word_order": "little",
     "value": "-9000000000000000001"},
    {"id": "total_kwh", "table": "input_register", "address": 28, "type": "float64", "value": 123456.789012},
    {"id": "current_limit_a", "table": "holding_register", "address": 100, "type": "uint16", "value": 160,
     "scale": 0.1, "writable": True},
    {"id": "max_power_kw", "table": "holding_register", "address": 101, "type": "float32", "word_order": "little",
     "value": 11.0, "writable": True},
    {"id": "energy_target_wh", "table": "holding_register", "address": 103, "type": "uint64", "value": "500",
     "writable": True},
    {"id": "setpoint_kw", "table": "holding_register", "address": 107, "type": "float64", "byte_order": "little",
     "value": 2.5, "writable": True},
    {"id": "enabled", "table": "coil", "address": 3, "type": "bool", "value": True, "writable": True},
    {"id": "locked", "table": "coil", "address": 12, "type": "bool", "value": False, "writable": True},
    {"id": "plugged", "table": "discrete_input", "address": 9, "type": "bool", "value": True},
]
WRITES = {"current_limit_a": 6.5, "max_power_kw": 7.5, "energy_target_wh": 2**40 + 7, "setpoint_kw": -3.25,
          "enabled": False, "locked": True}


def peer_specs(device_id: str, port: int, unit_id: int, *, timeout_s: float = 1.0):
    points = tuple(
        ModbusPointSpec(id=p["id"], unit="", function=p["table"], register=p["address"], data_type=p["type"],
                        word_order=p.get("word_order", "big"), byte_order=p.get("byte_order", "big"),
                        scale=p.get("scale", 1.0), writable=p.get("writable", False))
        for p in PEER_POINTS)
    return device_spec(device_id, points, port=port, unit_id=unit_id, timeout_s=timeout_s, max_gap_registers=20)


def expected_value(point: dict[str, Any]):
    value = point["value"]
    if isinstance(value, str):
        return int(value)
    return value * point.get("scale", 1.0) if "scale" in point else value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NodePeer:
    """A node script serving Modbus on 127.0.0.1; collects the JSON lines it prints."""

    def __init__(self, script: str, *args: str) -> None:
        self.script = PEERS / script
        self.args = args
        self.port = 0
        self.states: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NodePeer:
        node = shutil.which("node")
        if node is None or not NODE_MODULES.is_dir():
            pytest.fail("node and tests/peers/node/node_modules are needed: run scripts/setup-peers.sh",
                        pytrace=False)
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
        self._process = await asyncio.create_subprocess_exec(
            node, str(self.script), *self.args, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert self._process.stdout is not None
        try:
            async with asyncio.timeout(30):
                line = await self._process.stdout.readline()
        except TimeoutError:
            await self._kill()
            pytest.fail(f"{self.script.name} did not start within 30 s")
        if not line:
            stderr = await self._process.stderr.read() if self._process.stderr else b""
            pytest.fail(f"{self.script.name} exited: {stderr.decode(errors='replace')[-2000:]}")
        ready = json.loads(line)
        assert ready["event"] == "ready"
        self.port = ready["port"]
        self._reader = asyncio.get_running_loop().create_task(self._read_lines())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._kill()

    async def _kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self._process.wait()
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    async def _read_lines(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            event = json.loads(line)
            if event.get("event") == "state":
                async with self._changed:
                    self.states.append(event["values"])
                    self._changed.notify_all()

    async def wait_for_state(self, condition: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0):
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: bool(self.states) and condition(self.states[-1]))
        return self.states[-1]


async def read_all_and_write_back(driver: ModbusDriver, peer: NodePeer) -> None:
    readings = {r.address.split("/")[1]: r for r in await driver.read()}
    for point in PEER_POINTS:
        reading = readings[point["id"]]
        assert reading.quality is Quality.GOOD, reading
        assert reading.value == pytest.approx(expected_value(point), rel=1e-12), point["id"]
    # Everything fits in one request per table.
    assert len(driver.plan()) == 4
    for point_id, value in WRITES.items():
        result = await driver.write(point_id, value)
        assert result.read_back == pytest.approx(value)
        scale = next(p.get("scale", 1.0) for p in PEER_POINTS if p["id"] == point_id)
        # The peer decodes its own registers with Node's codecs and reports them.
        raw = round(value / scale) if scale != 1.0 else value
        state = await peer.wait_for_state(lambda values, pid=point_id, raw=raw: _same(values[pid], raw))
        assert _same(state[point_id], raw)


def _same(reported: Any, expected: Any) -> bool:
    if isinstance(reported, str):
        return int(reported) == expected
    if isinstance(expected, bool):
        return reported is expected
    return reported == pytest.approx(expected)


async def test_driver_reads_and_writes_a_jsmodbus_server():
    async with NodePeer("jsmodbus_server.js", "0", json.dumps(PEER_POINTS)) as peer:
        driver = ModbusDriver(peer_specs("js-charger", peer.port, unit_id=1), pool=fast_pool())
        try:
            await driver.connect()
            await read_all_and_write_back(driver, peer)
            assert driver.health().state is HealthState.OK
        finally:
            await driver.close()


async def test_a_short_answer_past_the_device_end_keeps_the_good_neighbours_good():
    # A meter whose holding registers end at 63: jsmodbus answers a block running past it with the registers
    # it has, short, without an exception.
    held = [
        {"id": "flow", "table": "holding_register", "address": 56, "type": "uint16", "value": 42},
        {"id": "energy", "table": "holding_register", "address": 58, "type": "float32", "value": 1234.5},
        {"id": "status", "table": "holding_register", "address": 62, "type": "uint16", "value": 3},
    ]
    missing = [{"id": "straddling", "address": 63, "type": "uint32"}, {"id": "beyond", "address": 66, "type": "uint16"}]
    points = tuple(ModbusPointSpec(id=p["id"], unit="", function="holding_register", register=p["address"],
                                   data_type=p["type"]) for p in held + missing)
    async with NodePeer("jsmodbus_server.js", "0", json.dumps(held), "64") as peer:
        driver = ModbusDriver(device_spec("meter", points, port=peer.port, timeout_s=2.0), pool=fast_pool())
        try:
            (block,) = driver.plan()
            assert (block.start, block.count) == (56, 11)
            for _ in range(2):
                readings = {r.address.split("/")[1]: r for r in await driver.read()}
                assert {k: r.value for k, r in readings.items() if r.quality is Quality.GOOD} == {
                    "flow": 42, "energy": 1234.5, "status": 3}
                for point_id, sent in (("straddling", "1 of 2"), ("beyond", "0 of 1")):
                    assert readings[point_id].quality is Quality.BAD
                    assert isinstance(driver.last_errors[point_id], ShortAnswer)
                    assert f"short answer: the device sent {sent} registers" in (readings[point_id].error or "")
            # From the first short answer on, each point is read on its own.
            assert len(driver.plan()) == 5
            assert driver.requests_sent == 1 + 5 + 5
            assert driver.health().state is HealthState.DEGRADED
        finally:
            await driver.close()


async def test_driver_reads_and_writes_a_modbus_serial_server_and_its_silent_unit_ids():
    async with NodePeer("modbus_serial_server.js", str(free_port()), "5", json.dumps(PEER_POINTS)) as peer:
        pool = fast_pool()
        driver = ModbusDriver(peer_specs("serial-charger", peer.port, unit_id=5), pool=pool)
        # modbus-serial ignores other unit ids: a silent neighbour on the same connection.
        ghost = ModbusDriver(peer_specs("ghost", peer.port, unit_id=6, timeout_s=0.3), pool=pool)
        try:
            await driver.connect()
            await read_all_and_write_back(driver, peer)
            for _ in range(3):
                ghost_readings, readings = await asyncio.gather(ghost.read(), driver.read())
                assert {r.quality for r in ghost_readings} == {Quality.BAD}
                assert {r.quality for r in readings} == {Quality.GOOD}
            # Its first request times out; the rest of each read is not sent, and says so.
            assert isinstance(ghost.last_errors["enabled"], DeviceTimeout)
            skipped = ghost.last_errors["voltage_v"]
            assert isinstance(skipped, NotAttempted) and isinstance(skipped.cause, DeviceTimeout)
            assert driver.endpoint is ghost.endpoint and driver.endpoint.connects == 1
        finally:
            await ghost.close()
            await driver.close()


# --------------------------------------------------------------------------- mbpoll

async def mbpoll(*args: str) -> str:
    executable = shutil.which("mbpoll")
    if executable is None:
        pytest.fail("mbpoll is needed (apt-get install mbpoll; scripts/setup-peers.sh)", pytrace=False)
    process = await asyncio.create_subprocess_exec(executable, *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, (args, stdout.decode(), stderr.decode())
    return stdout.decode()


def mbpoll_values(output: str) -> dict[int, str]:
    """{address: text} from mbpoll's "[address]: value" lines."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\[(\d+)\]:\s+(\S+)", output, re.MULTILINE)}


async def test_mbpoll_and_the_driver_agree_on_a_simulated_meter():
    device = sim_device(device_spec("meter", METER_POINTS, unit_id=7), METER_VALUES)
    async with SimModbusServer([device]) as server:
        driver = ModbusDriver(at_port(device.spec, server.port), pool=fast_pool())
        try:
            ours = {r.address.split("/")[1]: r.value for r in await driver.read()}
            base = ["-m", "tcp", "-p", str(server.port), "-a", "7", "-0", "-1", "-o", "5"]
            floats = mbpoll_values(await mbpoll(*base, "-t", "3:float", "-B", "-r", "0", "-c", "6", "127.0.0.1"))
            assert [float(floats[a]) for a in (0, 2, 4, 6, 8, 10)] == pytest.approx(
                [ours[p] for p in ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "current_l1_a", "current_l2_a",
                                   "current_l3_a")])
            ints = mbpoll_values(await mbpoll(*base, "-t", "3:int", "-B", "-r", "12", "-c", "2", "127.0.0.1"))
            assert int(ints[12]) * 0.001 == pytest.approx(ours["power_kw"])
            assert int(ints[14]) * 0.001 == pytest.approx(ours["reactive_power_kvar"])
            words = mbpoll_values(await mbpoll(*base, "-t", "3", "-r", "16", "-c", "2", "127.0.0.1"))
            assert int(words[16]) * 0.001 == pytest.approx(ours["power_factor"])
            assert int(words[17]) * 0.01 == pytest.approx(ours["frequency_hz"])
            status = mbpoll_values(await mbpoll(*base, "-t", "4:hex", "-r", "200", "-c", "2", "127.0.0.1"))
            assert int(status[200], 16) == ours["status_word"]
            assert bool(int(status[201], 16) & 1) is ours["phase_loss_alarm"]

            # mbpoll writes a holding register; the device and the driver see the new value.
            await mbpoll(*base, "-t", "4", "-r", "210", "127.0.0.1", "400")
            assert device.get("ct_ratio") == 400
            (reading,) = await driver.read(["ct_ratio"])
            assert reading.value == 400
        finally:
            await driver.close()
