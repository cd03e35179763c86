"""Test CAs and keys made with cryptography (no network, no files)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


def make_cert(
    *, ca: bool = True, key_cert_sign: bool = True, days: int = 365, start_days_ago: int = 1,
    key: object | None = None, cn: str = "Imported CA",
) -> tuple[x509.Certificate, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())  # type: ignore[attr-defined]
        .not_valid_before(now - timedelta(days=start_days_ago))
        .not_valid_after(now - timedelta(days=start_days_ago) + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=not key_cert_sign, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=key_cert_sign, crl_sign=key_cert_sign,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    )
    return builder.sign(key, hashes.SHA256()), key  # type: ignore[arg-type]


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: object, password: str = "") -> str:
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def p12(cert: x509.Certificate, key: object, password: str) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"ca", key, cert, None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(password.encode()),
    )


def rsa_key() -> object:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
