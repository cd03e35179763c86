"""Fixtures of the signing tests: test CAs and keys, a profile, stations with tokens, CSR makers."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from devices.services import station_create
from signing.crypto import key_usage
from signing.services import ca_generate, signing_profile_create


def make_cert(
    *,
    ca: bool = True,
    key_cert_sign: bool = True,
    days: int = 365,
    start_days_ago: int = 1,
    key: object | None = None,
    cn: str = "Imported CA",
) -> tuple[x509.Certificate, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        ]
    )
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())  # type: ignore[attr-defined]
        .not_valid_before(now - timedelta(days=start_days_ago))
        .not_valid_after(now - timedelta(days=start_days_ago) + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            key_usage(digital_signature=not key_cert_sign, cert_sign=key_cert_sign),
            critical=True,
        )
    )
    return builder.sign(key, hashes.SHA256()), key  # type: ignore[arg-type]


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: object, password: str = "") -> str:
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def p12(cert: x509.Certificate, key: object, password: str) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"ca",
        key,
        cert,
        None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(password.encode()),
    )


def rsa_key() -> object:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


CA_PASSWORD = "ca-password-123"


@pytest.fixture
def ca(db):  # noqa: ANN001, ANN201
    return ca_generate(alias="test-ca", dn="CN=Test Device CA,O=Example,C=DE", password=CA_PASSWORD)


@pytest.fixture
def profile(ca):  # noqa: ANN001, ANN201
    return signing_profile_create(
        name="default",
        ca=ca,
        ca_password=CA_PASSWORD,
        country="DE",
        organization="Example GmbH",
        organizational_unit="Fleet",
        is_default=True,
    )


@pytest.fixture
def station_token(db):  # noqa: ANN001, ANN201
    station, token = station_create(name="st-001")
    return station, token


@pytest.fixture
def other_station_token(db):  # noqa: ANN001, ANN201
    station, token = station_create(name="st-002")
    return station, token


def make_ec_csr(
    cn: str = "ignored", *, ca_true: bool = False, key: ec.EllipticCurvePrivateKey | None = None
) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if ca_true:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def openssl_csr(tmp_path: Path) -> Callable[[str], tuple[str, Path]]:
    """``openssl req`` CSRs: make("rsa") or make("ec") -> (PEM, key path)."""

    def make(kind: str, subj: str = "/CN=evil/O=Attacker/C=XX") -> tuple[str, Path]:
        key = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}.key"
        csr = key.with_suffix(".csr")
        newkey = (
            ["-newkey", "rsa:2048"]
            if kind == "rsa"
            else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        )
        subprocess.run(
            [
                "openssl",
                "req",
                "-new",
                *newkey,
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                subj,
                "-addext",
                "subjectAltName=DNS:evil.example.com",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ],
            check=True,
            capture_output=True,
        )
        return csr.read_text(), key

    return make


def issue_certificate(station, device: str = "aws"):  # noqa: ANN001, ANN201
    """A device certificate through the normal path: submit, approve, sign, fetched."""
    from signing.services import (
        onboarding_request_fetched,
        onboarding_request_submit,
        onboarding_requests_approve,
        onboarding_requests_sign,
    )

    key = ec.generate_private_key(ec.SECP256R1())
    request, _ = onboarding_request_submit(
        station=station, device_name=device, csr=make_ec_csr(key=key)
    )
    onboarding_requests_approve(ids=[request.pk])
    onboarding_requests_sign(ids=[request.pk])
    request.refresh_from_db()
    cert = onboarding_request_fetched(request=request)
    assert cert is not None
    cert.device_key = key  # type: ignore[attr-defined]  # for a renewal's proof
    return cert


# --- SoftHSM2 (the PKCS#11 key backend) ---------------------------------------------------
SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def softhsm_token_init(directory: Path, *, label: str, pin: str) -> tuple[str, dict[str, str]]:
    """A SoftHSM2 token of its own in ``directory``: (module path, env with SOFTHSM2_CONF)."""
    import os
    import shutil

    module = next((m for m in SOFTHSM_MODULES if Path(m).exists()), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        pytest.skip("SoftHSM2 is not installed (Debian: apt-get install softhsm2).")
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin + "-so"],
        check=True,
        capture_output=True,
        env=env,
    )
    return module, env


@pytest.fixture
def softhsm(tmp_path, monkeypatch, settings):  # noqa: ANN001, ANN201
    """A fresh SoftHSM2 token; the settings point the pkcs11 key backend at it."""
    from signing import hsm

    label, pin = "portal-test", "1234-test-pin"
    module, env = softhsm_token_init(tmp_path / "softhsm", label=label, pin=pin)
    monkeypatch.setenv("SOFTHSM2_CONF", env["SOFTHSM2_CONF"])
    settings.PKCS11_MODULE = module
    settings.PKCS11_TOKEN_LABEL = label
    settings.PKCS11_PIN = pin
    hsm.reset()
    yield {"module": module, "label": label, "pin": pin, "env": env}
    hsm.reset()
