"""Device key pairs, CSRs and certificate facts, all generated and kept on the station.

The private key never leaves the station: it is written PKCS#8, encrypted with the
certificate password from the fleet install, mode 0600, and only a CSR goes to the portal.

``cryptography`` is imported inside the functions that need it: an onboarded device that
only connects never loads it (its certificate facts are in state.json, TLS is the standard
library's), which keeps an idle agent's memory and start time small.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from fleet_agent.fsutil import atomic_write

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
else:
    PrivateKey = object

KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096")


class KeyFileError(Exception):
    """A key file cannot be used (missing, wrong password, damaged); the message is a sentence."""


def generate_private_key(key_type: str = "ec-p256") -> PrivateKey:
    """Make a fresh key of one of the portal's accepted types."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ec-p521":
        return ec.generate_private_key(ec.SECP521R1())
    if key_type.startswith("rsa-") and key_type in KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(f"unsupported key type {key_type!r}; use one of {', '.join(KEY_TYPES)}")


def save_private_key(path: Path | str, key: PrivateKey, password: str) -> None:
    """Write the key encrypted with ``password`` (PKCS#8 PEM), mode 0600, atomically."""
    from cryptography.hazmat.primitives import serialization

    if not password:
        raise KeyFileError("a key password is required to store the device key encrypted.")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    atomic_write(path, pem, 0o600)


def load_private_key(path: Path | str, password: str | None) -> PrivateKey:
    """Read an encrypted key file; a wrong password is reported without echoing it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"the key file {path} is missing.") from None
    try:
        key = serialization.load_pem_private_key(
            data, password=password.encode() if password else None
        )
    except (ValueError, TypeError):
        raise KeyFileError(
            f"the key file {path} cannot be decrypted with the configured key password."
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyFileError(f"the key file {path} holds an unsupported key type.")
    return key


def build_csr(key: PrivateKey, common_name: str) -> str:
    """CSR for ``key``; the portal's signing profile sets the real subject."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


PROOF_VERSION = "fleet-renewal-v1"


def renewal_proof(
    key: PrivateKey, *, station: str, device: str, csr_pem: str, now: float
) -> dict[str, object]:
    """Proof of possession for a renewal: the current key signs station, device, the new
    CSR's SHA-256 and the time (docs/agent-protocol.md, "Renewal")."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    timestamp = int(now)
    message = (
        f"{PROOF_VERSION}\n{station}\n{device}\n{hashlib.sha256(der).hexdigest()}\n{timestamp}"
    ).encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {"timestamp": timestamp, "signature": base64.b64encode(signature).decode()}


def public_key_der(key: PrivateKey) -> bytes:
    """Public key bytes, to check a returned certificate belongs to our key."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class CertInfo:
    """The facts about a device certificate the agent acts on and reports."""

    common_name: str
    serial_hex: str
    not_before: dt.datetime
    not_after: dt.datetime
    public_key_der: bytes = b""  # empty when rebuilt from state.json (cert_info_from_state)

    def default_renew_at(self) -> dt.datetime:
        """Two thirds into the lifetime, the usual point to renew without a gap."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3


def cert_info(pem: str | bytes) -> CertInfo:
    """Parse the first certificate of a PEM blob."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    if isinstance(pem, str):
        pem = pem.encode()
    cert = x509.load_pem_x509_certificate(pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    return CertInfo(
        common_name=cn,
        serial_hex=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        public_key_der=cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def cert_info_from_state(entry: dict[str, object]) -> CertInfo | None:
    """The facts state.json keeps about the installed certificate, without parsing it."""
    try:
        return CertInfo(
            common_name=str(entry["thing_name"]),
            serial_hex=str(entry["cert_serial"]),
            not_before=_parse_z(str(entry["cert_not_before"])),
            not_after=_parse_z(str(entry["cert_not_after"])),
        )
    except (KeyError, ValueError):
        return None


def _parse_z(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
