"""The OPC-UA driver against node-opcua, a server stack nobody here wrote, also over Basic256Sha256.

The peer is `tests/peers/opcua_server.js` (node-opcua from tests/peers/node, installed by
scripts/setup-peers.sh); a missing Node.js or node-opcua fails these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from test_opcua import eventually_read, fast_backoff

from drivers.base import ConnectionLost, IllegalAddress, LimitViolation, Quality, WriteRejected
from drivers.opcua import OpcuaDriver
from drivers.opcua_security import UntrustedServer
from drivers.specs import OpcuaDeviceSpec, OpcuaPointSpec, OpcuaSecuritySpec

try:
    from tests.support_pki import CertificateFiles, make_certificate
except ModuleNotFoundError:  # tests/ itself is on sys.path when tests/ is not a package
    from support_pki import CertificateFiles, make_certificate

pytestmark = pytest.mark.peers

PEER_SCRIPT = Path(__file__).resolve().parents[1] / "peers" / "opcua_server.js"
PEER_NS = "urn:gridctl:test:node-opcua"
START_TIMEOUT_S = 60.0


@dataclass
class Peer:
    endpoint: str
    certificate: CertificateFiles
    process: subprocess.Popen[bytes]
    directory: Path


def start_peer(directory: Path, *, secure: bool = False, trusted_client: CertificateFiles | None = None) -> Peer:
    """Start the node-opcua peer on a free loopback port and wait until it listens."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: run scripts/setup-peers.sh", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    # The server's own certificate, made here: node-opcua generating one takes seconds.
    certificate = make_certificate(directory / "own", "peer-server", "urn:gridctl:test:peer-server")
    options = {
        "port": 0, "pkiDir": str(directory / "pki"), "namespaceUri": PEER_NS, "secure": secure,
        "certificateFile": str(certificate.certificate_path), "privateKeyFile": str(certificate.private_key_path),
        "applicationUri": certificate.application_uri,
    }
    if trusted_client is not None:
        options["trustedClientCertificate"] = str(trusted_client.certificate_path)
    stdout_path, stderr_path = directory / "peer.out", directory / "peer.err"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen([node, str(PEER_SCRIPT), json.dumps(options)], stdin=subprocess.PIPE,
                                   stdout=stdout, stderr=stderr, env={**os.environ, "HOME": str(directory)})
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        for line in stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                port = int(line.split()[1])
                return Peer(f"opc.tcp://127.0.0.1:{port}/gridctl/peer", certificate, process, directory)
        if process.poll() is not None or time.monotonic() > deadline:
            stop_peer(process)
            pytest.fail(f"node-opcua peer did not start (exit {process.returncode}):\n"
                        f"{stderr_path.read_text(errors='replace')[-3000:]}", pytrace=False)
        time.sleep(0.05)


def stop_peer(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class SecurePeer:
    peer: Peer
    client: CertificateFiles


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    started = start_peer(tmp_path_factory.mktemp("opcua-peer"))
    yield started
    stop_peer(started.process)


@pytest.fixture(scope="module")
def secure_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePeer]:
    directory = tmp_path_factory.mktemp("opcua-secure-peer")
    client = make_certificate(directory / "client", "gridctl-client", "urn:gridctl:test:client")
    started = start_peer(directory / "peer", secure=True, trusted_client=client)
    yield SecurePeer(started, client)
    stop_peer(started.process)


def peer_spec(endpoint: str, *, subscription: bool = False, security: OpcuaSecuritySpec | None = None,
              extra: tuple[OpcuaPointSpec, ...] = ()) -> OpcuaDeviceSpec:
    def point(pid: str, node: str, data_type: str, **kwargs: object) -> OpcuaPointSpec:
        return OpcuaPointSpec(id=pid, unit="", node_id=f"nsu={PEER_NS};s=hvac.{node}", data_type=data_type,
                              **kwargs)  # type: ignore[arg-type]

    points = (
        point("supply_temperature_c", "supply_temp", "Double"),
        point("setpoint_c", "setpoint", "Float", writable=True, min=10.0, max=30.0),
        point("enabled", "enabled", "Boolean", writable=True),
        point("mode", "mode", "Int16", writable=True),
        point("fan_speed_rpm", "fan_speed", "UInt16", writable=True),
        point("runtime_s", "runtime_s", "UInt32", writable=True),
        point("energy_wh", "energy_wh", "Int64", writable=True),
        point("flow_m3_per_h", "flow", "Double", writable=True),
        point("label", "label", "String", writable=True),
        point("ticks", "ticks", "UInt32"),
        point("sensor", "sensor", "Double"),
        point("uncertain", "uncertain", "Double"),
        *extra,
    )
    return OpcuaDeviceSpec(id="ahu", endpoint=endpoint, timeout_s=2.0, retries=1, poll_interval_s=0.2,
                           subscription=subscription, security=security or OpcuaSecuritySpec(), points=points)


async def connected(spec: OpcuaDeviceSpec) -> OpcuaDriver:
    driver = OpcuaDriver(spec, backoff=fast_backoff())
    await driver.connect()
    return driver


async def exercise(driver: OpcuaDriver) -> None:
    """Read everything in one request, then write and read back every writable point."""
    readings = {r.address.split("/")[1]: r for r in await driver.read()}
    assert driver.read_requests == 1
    assert readings["supply_temperature_c"].value == 18.25
    assert all(readings[p.id].quality is Quality.GOOD for p in driver.spec.points if p.writable)
    assert isinstance(readings["setpoint_c"].value, float) and isinstance(readings["enabled"].value, bool)
    assert isinstance(readings["mode"].value, int) and isinstance(readings["label"].value, str)
    assert isinstance(readings["ticks"].value, int) and readings["ticks"].quality is Quality.GOOD
    assert readings["sensor"].quality is Quality.BAD and readings["sensor"].error == "BadSensorFailure"
    assert readings["sensor"].value is None
    assert readings["uncertain"].quality is Quality.STALE and readings["uncertain"].value == 7.5

    values = {"setpoint_c": 22.5, "enabled": not readings["enabled"].value, "mode": -2, "fan_speed_rpm": 65535,
              "runtime_s": 2**32 - 1, "energy_wh": -(2**62), "flow_m3_per_h": 3.25, "label": "AHU-1 (east)"}
    for point_id, value in values.items():
        result = await driver.write(point_id, value)
        assert result.read_back == value and type(result.read_back) is type(value)
    readings = {r.address.split("/")[1]: r for r in await driver.read()}
    assert {pid: readings[pid].value for pid in values} == values


async def test_reads_and_writes_every_type_on_node_opcua(peer: Peer) -> None:
    driver = await connected(peer_spec(peer.endpoint))
    try:
        await exercise(driver)
    finally:
        await driver.close()


async def test_node_opcua_status_codes_become_typed_errors(peer: Peer) -> None:
    extra = (
        OpcuaPointSpec(id="ghost", unit="", node_id=f"nsu={PEER_NS};s=hvac.ghost", data_type="Double", writable=True),
        # The site says these are writable or Double; the device knows better.
        OpcuaPointSpec(id="supply_rw", unit="", node_id=f"nsu={PEER_NS};s=hvac.supply_temp", data_type="Double",
                       writable=True),
        OpcuaPointSpec(id="mode_as_double", unit="", node_id=f"nsu={PEER_NS};s=hvac.mode", data_type="Double",
                       writable=True),
        OpcuaPointSpec(id="damper_pct", unit="%", node_id=f"nsu={PEER_NS};s=hvac.damper_pct", data_type="Int16",
                       writable=True),
    )
    driver = await connected(peer_spec(peer.endpoint, extra=extra))
    try:
        with pytest.raises(IllegalAddress, match="BadNodeIdUnknown"):
            await driver.write("ghost", 1.0)
        with pytest.raises(WriteRejected, match=r"BadNotWritable|BadUserAccessDenied"):
            await driver.write("supply_rw", 1.0)
        with pytest.raises(WriteRejected, match="BadTypeMismatch"):
            await driver.write("mode_as_double", 2.0)
        with pytest.raises(WriteRejected, match="BadOutOfRange"):
            await driver.write("damper_pct", 150)
        assert (await driver.write("damper_pct", 55)).read_back == 55
        with pytest.raises(LimitViolation):
            await driver.write("setpoint_c", 31.0)
        readings = {r.address.split("/")[1]: r for r in await driver.read()}
        assert readings["ghost"].quality is Quality.BAD and readings["ghost"].error == "BadNodeIdUnknown"
        # An Int16 served where the site expects a Double is still a number.
        assert isinstance(readings["mode_as_double"].value, float)
        assert readings["mode_as_double"].value == readings["mode"].value
        assert driver.connections == 1
    finally:
        await driver.close()


async def test_subscribes_on_node_opcua(peer: Peer) -> None:
    driver = await connected(peer_spec(peer.endpoint, subscription=True))
    try:
        first = await eventually_read(driver, lambda rs: rs[9].value is not None)
        ticks = first[9].value
        later = await eventually_read(driver, lambda rs: rs[9].value >= ticks + 5)
        assert later[9].quality is Quality.GOOD
        by_point = {r.address.split("/")[1]: r for r in later}
        assert by_point["sensor"].quality is Quality.BAD
        assert by_point["uncertain"].quality is Quality.STALE
        assert driver.read_requests == 1
        await driver.write("setpoint_c", 24.5)
        await eventually_read(driver, lambda rs: rs[1].value == 24.5)
    finally:
        await driver.close()


# --------------------------------------------------------------------------- security


def secure_spec(endpoint: str, client: CertificateFiles, server_certificate: Path, *,
                subscription: bool = False) -> OpcuaDeviceSpec:
    security = OpcuaSecuritySpec(policy="Basic256Sha256", mode="SignAndEncrypt",
                                 certificate=str(client.certificate_path), private_key=str(client.private_key_path),
                                 server_certificate=str(server_certificate))
    return peer_spec(endpoint, subscription=subscription, security=security)


async def test_sign_and_encrypt_with_validated_server_certificate(secure_peer: SecurePeer) -> None:
    peer, client = secure_peer.peer, secure_peer.client
    # The peer offers no unsecured endpoint: a session without security is refused.
    plain = OpcuaDriver(replace(peer_spec(peer.endpoint), timeout_s=1.0), backoff=fast_backoff())
    with pytest.raises(ConnectionLost):
        await plain.connect()
    await plain.close()

    driver = await connected(secure_spec(peer.endpoint, client, peer.certificate.certificate_path))
    try:
        await exercise(driver)
    finally:
        await driver.close()
    subscriber = await connected(secure_spec(peer.endpoint, client, peer.certificate.certificate_path,
                                             subscription=True))
    try:
        first = await eventually_read(subscriber, lambda rs: rs[9].value is not None)
        await eventually_read(subscriber, lambda rs: rs[9].value >= first[9].value + 3)
    finally:
        await subscriber.close()


async def test_untrusted_server_certificate_is_refused(secure_peer: SecurePeer, tmp_path: Path) -> None:
    peer, client = secure_peer.peer, secure_peer.client
    # Same application URI as the real server, another key: what an impostor would present.
    impostor = make_certificate(tmp_path / "other", "peer-server", "urn:gridctl:test:peer-server")
    driver = OpcuaDriver(secure_spec(peer.endpoint, client, impostor.certificate_path), backoff=fast_backoff())
    try:
        with pytest.raises(UntrustedServer, match="BadCertificateUntrusted"):
            await driver.connect()
        readings = await driver.read()
        assert all(r.quality is Quality.BAD for r in readings)
        assert "BadCertificateUntrusted" in (driver.health().last_error or "")
        assert driver.connections == 0
    finally:
        await driver.close()


async def test_server_refuses_a_client_certificate_it_does_not_trust(secure_peer: SecurePeer,
                                                                     tmp_path: Path) -> None:
    peer = secure_peer.peer
    stranger = make_certificate(tmp_path / "stranger", "stranger", "urn:gridctl:test:stranger")
    driver = OpcuaDriver(replace(secure_spec(peer.endpoint, stranger, peer.certificate.certificate_path),
                                 timeout_s=1.0), backoff=fast_backoff())
    try:
        with pytest.raises(ConnectionLost):
            await driver.connect()
        assert driver.connections == 0
    finally:
        await driver.close()
