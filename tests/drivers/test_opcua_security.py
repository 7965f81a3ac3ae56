"""Basic256Sha256 SignAndEncrypt against the simulated asyncua server, and the server-certificate validator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.common.utils import ServiceError
from test_opcua import INITIAL, bms_spec, fast_backoff

from drivers.base import ConnectionLost, Quality
from drivers.opcua import OpcuaDriver
from drivers.opcua_security import PinnedServerValidator, UntrustedServer, application_uri_of
from drivers.specs import OpcuaDeviceSpec, OpcuaSecuritySpec
from sim.core import SimDevice, WallClock
from sim.opcua_server import OpcuaSimServer

try:
    from tests.support_pki import CertificateFiles, make_certificate
except ModuleNotFoundError:  # tests/ itself is on sys.path when tests/ is not a package
    from support_pki import CertificateFiles, make_certificate

SERVER_URI = "urn:gridctl:test:sim-server"
CLIENT_URI = "urn:gridctl:test:client"


def secured(spec: OpcuaDeviceSpec, client: CertificateFiles, server_certificate: Path | None) -> OpcuaDeviceSpec:
    return replace(spec, security=OpcuaSecuritySpec(
        policy="Basic256Sha256", mode="SignAndEncrypt", certificate=str(client.certificate_path),
        private_key=str(client.private_key_path),
        server_certificate=str(server_certificate) if server_certificate else None))


# One secured server for the module: starting an asyncua server costs about a second of CPU.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_sim(
        tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SimDevice, OpcuaSimServer, CertificateFiles]]:
    directory = tmp_path_factory.mktemp("opcua-secure-sim")
    ca = make_certificate(directory / "ca", "district-ca", "urn:gridctl:test:ca", ca=True)
    server_certificate = make_certificate(directory / "server", "sim-server", SERVER_URI, issuer=ca)
    device = SimDevice(bms_spec(), WallClock(), INITIAL)
    server = OpcuaSimServer([device], certificate=server_certificate.certificate_path,
                            private_key=server_certificate.private_key_path, allow_unsecured=False)
    async with server:
        yield device, server, ca


@in_module_loop
async def test_sign_and_encrypt_with_the_simulated_server(
        secure_sim: tuple[SimDevice, OpcuaSimServer, CertificateFiles], tmp_path: Path) -> None:
    device, server, ca = secure_sim
    client = make_certificate(tmp_path / "client", "gridctl", CLIENT_URI)
    assert server.certificate is not None

    plain = OpcuaDriver(replace(bms_spec(server.endpoint), timeout_s=1.0), backoff=fast_backoff())
    with pytest.raises(ConnectionLost):
        await plain.connect()  # no unsecured endpoint
    await plain.close()

    # Pinned: the server's own certificate; or trusted through the CA that issued it.
    for trusted in (server.certificate, ca.certificate_path):
        driver = OpcuaDriver(secured(bms_spec(server.endpoint), client, trusted), backoff=fast_backoff())
        await driver.connect()
        try:
            readings = await driver.read()
            assert all(r.quality is Quality.GOOD for r in readings)
            assert readings[0].value == INITIAL["supply_temperature_c"]
            result = await driver.write("setpoint_c", 19.5)
            assert result.read_back == 19.5 and device.get("setpoint_c") == 19.5
        finally:
            await driver.close()


@in_module_loop
async def test_refuses_a_server_certificate_it_was_not_told_to_trust(
        secure_sim: tuple[SimDevice, OpcuaSimServer, CertificateFiles], tmp_path: Path) -> None:
    _, server, _ = secure_sim
    client = make_certificate(tmp_path / "client", "gridctl", CLIENT_URI)
    other_ca = make_certificate(tmp_path / "other-ca", "other-ca", "urn:gridctl:test:other-ca", ca=True)
    driver = OpcuaDriver(secured(bms_spec(server.endpoint), client, other_ca.certificate_path),
                         backoff=fast_backoff())
    try:
        with pytest.raises(UntrustedServer, match="BadCertificateUntrusted"):
            await driver.connect()
        assert driver.connections == 0
        assert all(r.quality is Quality.BAD for r in await driver.read())
    finally:
        await driver.close()


@in_module_loop
async def test_encryption_without_a_server_certificate_to_check_is_refused(
        secure_sim: tuple[SimDevice, OpcuaSimServer, CertificateFiles], tmp_path: Path) -> None:
    _, server, _ = secure_sim
    client = make_certificate(tmp_path / "client", "gridctl", CLIENT_URI)
    driver = OpcuaDriver(secured(bms_spec(server.endpoint), client, None), backoff=fast_backoff())
    try:
        with pytest.raises(ConnectionLost, match="server_certificate"):
            await driver.connect()
        assert driver.connections == 0
    finally:
        await driver.close()


def test_validator_checks_trust_validity_and_application_uri(tmp_path: Path) -> None:
    ca = make_certificate(tmp_path / "ca", "ca", "urn:gridctl:test:ca", ca=True)
    issued = make_certificate(tmp_path / "issued", "issued", SERVER_URI, issuer=ca)
    stranger = make_certificate(tmp_path / "stranger", "stranger", SERVER_URI)
    expired = make_certificate(tmp_path / "expired", "expired", SERVER_URI, issuer=ca,
                               not_before=datetime.now(UTC) - timedelta(days=40), days=30)

    def status(validator: PinnedServerValidator, certificate: CertificateFiles, uri: str | None = SERVER_URI) -> str:
        try:
            validator.check(certificate.certificate, uri)
        except ServiceError as exc:
            return ua.StatusCode(exc.code).name
        return "Good"

    by_ca = PinnedServerValidator(ca.certificate)
    assert status(by_ca, issued) == "Good"
    assert status(by_ca, stranger) == "BadCertificateUntrusted"
    assert status(by_ca, expired) == "BadCertificateTimeInvalid"
    assert status(by_ca, issued, "urn:someone:else") == "BadCertificateUriInvalid"
    pinned = PinnedServerValidator(stranger.certificate)
    assert status(pinned, stranger) == "Good"
    assert status(pinned, issued) == "BadCertificateUntrusted"
    assert application_uri_of(issued.certificate) == SERVER_URI
