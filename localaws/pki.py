"""The stand-in's own PKI: the server CA and certificate of the MQTT front, and the
"Amazon" CA that signs certificates AWS IoT itself would issue (CreateKeysAndCertificate,
CreateCertificateFromCsr, fleet provisioning). Keys live in the state directory so that a
restart with the same --state-dir keeps the same trust anchors.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_CA_FILE = "server-ca.pem"
SERVER_CA_KEY_FILE = "server-ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
AMAZON_CA_FILE = "amazon-ca.pem"
AMAZON_CA_KEY_FILE = "amazon-ca.key"

PrivateKey = ec.EllipticCurvePrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(cn: str, org: str = "", days: int = 3650) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed EC P-256 CA (subject O=`org` when given, CN=`cn`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    name = x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def sign_public_key(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    subject: x509.Name,
    public_key: object,
    *,
    days: int = 365,
    server_names: list[str] | None = None,
) -> x509.Certificate:
    """Issue an end-entity certificate (client unless `server_names` is given)."""
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if server_names:
        sans: list[x509.GeneralName] = []
        for n in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


@dataclass
class StandInPki:
    """Paths and objects of the stand-in's CAs and server certificate."""

    state_dir: Path
    server_ca_cert: x509.Certificate
    server_cert_path: Path
    server_key_path: Path
    amazon_ca_key: PrivateKey
    amazon_ca_cert: x509.Certificate

    @property
    def server_ca_path(self) -> Path:
        return self.state_dir / SERVER_CA_FILE

    @property
    def amazon_ca_path(self) -> Path:
        return self.state_dir / AMAZON_CA_FILE

    @property
    def amazon_ca_pem(self) -> str:
        return self.amazon_ca_cert.public_bytes(serialization.Encoding.PEM).decode()


def _load_or_make_ca(
    state_dir: Path, cert_file: str, key_file: str, cn: str, org: str
) -> tuple[PrivateKey, x509.Certificate]:
    cp, kp = state_dir / cert_file, state_dir / key_file
    if cp.exists() and kp.exists():
        cert = x509.load_pem_x509_certificate(cp.read_bytes())
        key = serialization.load_pem_private_key(kp.read_bytes(), None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc > _now():
            return key, cert
    key, cert = make_ca(cn, org)
    _write_private(kp, _key_pem(key))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def setup_pki(state_dir: Path, server_names: list[str]) -> StandInPki:
    """Load or create the CAs, and issue a fresh server certificate for `server_names`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _load_or_make_ca(
        state_dir, SERVER_CA_FILE, SERVER_CA_KEY_FILE, "localaws server CA", "localaws"
    )
    amz_key, amz_cert = _load_or_make_ca(
        state_dir,
        AMAZON_CA_FILE,
        AMAZON_CA_KEY_FILE,
        "AWS IoT Certificate (localaws stand-in)",
        "Amazon Web Services (localaws stand-in)",
    )
    skey = ec.generate_private_key(ec.SECP256R1())
    scert = sign_public_key(
        ca_key,
        ca_cert,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])]),
        skey.public_key(),
        days=825,
        server_names=server_names,
    )
    sp, kp = state_dir / SERVER_CERT_FILE, state_dir / SERVER_KEY_FILE
    sp.write_bytes(scert.public_bytes(serialization.Encoding.PEM))
    _write_private(kp, _key_pem(skey))
    return StandInPki(state_dir, ca_cert, sp, kp, amz_key, amz_cert)
