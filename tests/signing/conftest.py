"""Fixtures of the signing tests: a test CA, a profile, stations with tokens, CSR makers."""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devices.services import station_create
from signing.issuance import signing_profile_create
from signing.services import ca_generate

CA_PASSWORD = "ca-password-123"


@pytest.fixture
def ca(db):  # noqa: ANN001, ANN201
    return ca_generate(alias="test-ca", dn="CN=Test Device CA,O=Example,C=DE",
                       password=CA_PASSWORD)


@pytest.fixture
def profile(ca):  # noqa: ANN001, ANN201
    return signing_profile_create(
        name="default", ca=ca, ca_password=CA_PASSWORD, country="DE",
        organization="Example GmbH", organizational_unit="Fleet", is_default=True,
    )


@pytest.fixture
def station_token(db):  # noqa: ANN001, ANN201
    station, token = station_create(name="st-001")
    return station, token


@pytest.fixture
def other_station_token(db):  # noqa: ANN001, ANN201
    station, token = station_create(name="st-002")
    return station, token


def make_ec_csr(cn: str = "ignored", *, ca_true: bool = False,
                key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if ca_true:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def openssl_csr(tmp_path: Path) -> Callable[[str], tuple[str, Path]]:
    """``openssl req`` CSRs: make("rsa") or make("ec") -> (PEM, key path)."""

    def make(kind: str, subj: str = "/CN=evil/O=Attacker/C=XX") -> tuple[str, Path]:
        key = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}.key"
        csr = key.with_suffix(".csr")
        newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else [
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        subprocess.run(
            ["openssl", "req", "-new", *newkey, "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", subj, "-addext", "subjectAltName=DNS:evil.example.com",
             "-addext", "extendedKeyUsage=serverAuth"],
            check=True, capture_output=True,
        )
        return csr.read_text(), key

    return make
