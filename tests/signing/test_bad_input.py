"""The bad-input corpus: every malformed submission is a 4xx with a sentence, nothing is signed."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID

from signing.csr import CsrError, csr_validate
from signing.models import IssuedCertificate, OnboardingRequest
from tests.signing.conftest import make_ec_csr

URL = "/api/v1/onboarding-requests"


def _csr_with(key) -> str:  # noqa: ANN001
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _bad_signature() -> str:
    pem = make_ec_csr()
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # flip a bit inside the signature
    b64 = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n"


def _certificate_pem() -> str:
    from signing.services import ca_generate

    return ca_generate(alias="pasted", dn="CN=pasted", password="pasted-pass-1").certificate_pem


def _dsa_csr(tmp: Path) -> str:
    return _csr_with(dsa.generate_private_key(2048))


def _rsa1024() -> str:
    return _csr_with(rsa.generate_private_key(public_exponent=65537, key_size=1024))


def _private_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _unknown_curve() -> str:
    return _csr_with(ec.generate_private_key(ec.SECP256K1()))


def _truncated() -> str:
    pem = make_ec_csr()
    return pem[: len(pem) // 2]


def _truncated_body() -> str:
    lines = make_ec_csr().splitlines()
    return "\n".join([lines[0], *lines[1:3], lines[-1]]) + "\n"


CSR_CORPUS = {
    "garbage": (lambda: "hello, I am not a CSR", "csr_not_pem"),
    "truncated_pem": (_truncated, "csr_truncated"),
    "truncated_body": (_truncated_body, "csr_malformed"),
    "bad_signature": (_bad_signature, "csr_bad_signature"),
    "rsa_1024": (_rsa1024, "csr_key_too_small"),
    "dsa": (lambda: _dsa_csr(Path()), "csr_key_type_not_accepted"),
    "unknown_curve": (_unknown_curve, "csr_key_type_not_accepted"),
    "ca_true": (lambda: make_ec_csr(ca_true=True), "csr_requests_ca"),
    "certificate": (_certificate_pem, "csr_is_certificate"),
    "private_key": (_private_key_pem, "csr_is_private_key"),
    "random_der": (
        lambda: base64.b64encode(b"\x30\x82\x01\x00" + b"\x00" * 50).decode(),
        "csr_not_pem",
    ),
    "csr_over_16k": (lambda: make_ec_csr() + "A" * 17000, "csr_too_large"),
}


def _post(client, token: str, data: bytes | str, **extra):  # noqa: ANN001, ANN003, ANN201
    return client.post(
        URL,
        data=data,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        **extra,
    )


@pytest.mark.parametrize("case", sorted(CSR_CORPUS))
@pytest.mark.django_db
def test_bad_csr_is_refused_with_a_sentence(client, profile, station_token, case) -> None:  # noqa: ANN001
    _, token = station_token
    make, code = CSR_CORPUS[case]
    response = _post(client, token, json.dumps({"device": "aws", "csr": make()}))
    assert 400 <= response.status_code < 500, response.content
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"].endswith(".")
    assert len(body["detail"]) > 15
    assert OnboardingRequest.objects.count() == 0
    assert IssuedCertificate.objects.count() == 0


BODY_CORPUS = {
    "empty_body": (b"", 400, "empty_body"),
    "garbage_json": (b"{not json", 400, "invalid_json"),
    "binary": (b"\xff\xfe\x00garbage", 400, "invalid_json"),
    "json_list": (b"[1, 2]", 422, "invalid_request"),
    "json_string": (b'"csr"', 422, "invalid_request"),
    "device_int": (b'{"device": 5, "csr": "x"}', 422, "invalid_request"),
    "csr_list": (b'{"device": "aws", "csr": ["x"]}', 422, "invalid_request"),
    "renewal_string": (b'{"device": "aws", "csr": "x", "renewal": "yes"}', 422, "invalid_request"),
    "missing_csr": (b'{"device": "aws"}', 422, "invalid_request"),
    "null_device": (b'{"device": null, "csr": "x"}', 422, "invalid_request"),
    "bad_device_name": (b'{"device": "../etc/passwd", "csr": "x"}', 422, "invalid_device_name"),
    "device_with_slash_topic": (b'{"device": "a/#", "csr": "x"}', 422, "invalid_device_name"),
    "long_comment": (
        json.dumps({"device": "a", "csr": "x", "comment": "c" * 300}).encode(),
        422,
        "invalid_request",
    ),
    "one_megabyte": (
        json.dumps({"device": "aws", "csr": "A" * (1024 * 1024)}).encode(),
        413,
        "too_large",
    ),
}


@pytest.mark.parametrize("case", sorted(BODY_CORPUS))
@pytest.mark.django_db
def test_bad_body_is_refused_with_a_sentence(client, profile, station_token, case) -> None:  # noqa: ANN001
    _, token = station_token
    data, status, code = BODY_CORPUS[case]
    response = _post(client, token, data)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert OnboardingRequest.objects.count() == 0


@pytest.mark.django_db
def test_wrong_content_length_header_is_413(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    response = _post(client, token, b"{}", CONTENT_LENGTH="5000000")
    assert response.status_code == 413


def test_der_csr_is_accepted_by_the_validator(tmp_path: Path) -> None:
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / "k"),
            "-subj",
            "/CN=x",
            "-outform",
            "DER",
            "-out",
            str(tmp_path / "c.der"),
        ],
        check=True,
        capture_output=True,
    )
    valid = csr_validate((tmp_path / "c.der").read_bytes())
    assert valid.key_type == "ec-p256"
    assert valid.pem.startswith("-----BEGIN CERTIFICATE REQUEST-----")


def test_validator_codes_are_stable() -> None:
    with pytest.raises(CsrError) as exc:
        csr_validate("")
    assert exc.value.code == "csr_missing"
