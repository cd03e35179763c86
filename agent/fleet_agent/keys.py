"""Device key pairs, CSRs and certificate facts, all generated and kept on the station.

The private key never leaves the station: it is written PKCS#8, encrypted with the
certificate password from the fleet install, mode 0600, and only a CSR goes to the portal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fleet_agent.fsutil import atomic_write

KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class KeyFileError(Exception):
    """A key file cannot be used (missing, wrong password, damaged); the message is a sentence."""


def generate_private_key(key_type: str = "ec-p256") -> PrivateKey:
    """Make a fresh key of one of the portal's accepted types."""
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
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def public_key_der(key: PrivateKey) -> bytes:
    """Public key bytes, to check a returned certificate belongs to our key."""
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
    public_key_der: bytes

    def default_renew_at(self) -> dt.datetime:
        """Two thirds into the lifetime, the usual point to renew without a gap."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3


def cert_info(pem: str | bytes) -> CertInfo:
    """Parse the first certificate of a PEM blob."""
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
