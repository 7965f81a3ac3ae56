"""OPC-UA secure channels: client certificates and validation of the server's certificate.

asyncua encrypts to whatever certificate a server presents and checks nothing unless the client
has a `certificate_validator`. gridctl always validates: the server's certificate must be the one
configured in `security.server_certificate` (pinned), or be issued by it (a CA), and be in date.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.base import ConnectionLost
from drivers.specs import OpcuaSecuritySpec

_POLICIES = {"Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


class UntrustedServer(ConnectionLost):
    """The server's certificate is not the configured one (nor issued by it), or is out of date."""


def load_certificate(path: str | Path) -> x509.Certificate:
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def application_uri_of(certificate: x509.Certificate) -> str:
    """The certificate's URI SubjectAltName, which OPC-UA requires to equal the ApplicationUri."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError("certificate has no SubjectAltName with the application URI") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise ValueError("certificate has no URI SubjectAltName (the application URI)")
    return uris[0]


class PinnedServerValidator:
    """asyncua certificate validator trusting one certificate, or the certificates it issued."""

    def __init__(self, trusted: x509.Certificate) -> None:
        self.trusted = trusted

    def check(self, certificate: x509.Certificate, application_uri: str | None = None) -> None:
        """Raise ServiceError with the OPC-UA status code when `certificate` is not acceptable."""
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        if not self._trusted(certificate):
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        if application_uri:
            try:
                uri = application_uri_of(certificate)
            except ValueError:
                raise ServiceError(ua.StatusCodes.BadCertificateUriInvalid) from None
            if uri != application_uri:
                raise ServiceError(ua.StatusCodes.BadCertificateUriInvalid)

    async def __call__(self, certificate: x509.Certificate, description: ua.ApplicationDescription) -> None:
        self.check(certificate, description.ApplicationUri)

    def _trusted(self, certificate: x509.Certificate) -> bool:
        if certificate.public_bytes(Encoding.DER) == self.trusted.public_bytes(Encoding.DER):
            return True
        try:
            certificate.verify_directly_issued_by(self.trusted)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


async def apply_security(client: Client, security: OpcuaSecuritySpec, device_id: str) -> None:
    """Configure `client` for the device's security policy; no-op for policy None.

    Fetches the server's endpoints over an unsecured channel (as every OPC-UA client does), then
    refuses a server certificate that the validator does not accept before opening the session.
    """
    if security.policy == "None":
        return
    policy = _POLICIES.get(security.policy)
    mode = _MODES.get(security.mode)
    if policy is None or mode is None:
        raise ConnectionLost(f"unsupported security {security.policy}/{security.mode}", device_id=device_id)
    if not (security.certificate and security.private_key):
        raise ConnectionLost(f"{security.policy} needs a client certificate and private key", device_id=device_id)
    if not security.server_certificate:
        raise ConnectionLost(f"{security.policy} needs security.server_certificate to validate the server",
                             device_id=device_id)
    client_certificate = load_certificate(security.certificate)
    client.application_uri = application_uri_of(client_certificate)
    validator = PinnedServerValidator(load_certificate(security.server_certificate))
    client.certificate_validator = validator
    await client.set_security(policy, security.certificate, security.private_key, mode=mode)
    presented = client.security_policy.peer_certificate
    if presented is None:
        raise UntrustedServer("server presented no certificate", device_id=device_id)
    try:
        validator.check(x509.load_der_x509_certificate(presented))
    except ServiceError as exc:
        raise UntrustedServer(f"server certificate refused: {ua.StatusCode(exc.code).name}",
                              device_id=device_id) from None
