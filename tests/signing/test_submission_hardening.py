"""Station submissions: the default key types, one CSR per body and never a private key,
deep JSON, the pending cap with Retry-After."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signing.csr import CsrError, csr_validate
from signing.models import OnboardingRequest, default_accepted_key_types
from tests.signing.conftest import make_ec_csr

from .test_bad_input import _csr_with

URL = "/api/v1/onboarding-requests"


def post(client, token: str, body: object = None, raw: bytes | None = None):  # noqa: ANN001, ANN201
    return client.post(
        URL,
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_the_default_key_types_are_what_aws_iot_accepts() -> None:
    assert default_accepted_key_types() == [
        "ec-p256",
        "ec-p384",
        "ec-p521",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
    ]


@pytest.mark.parametrize(
    ("key", "key_type"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ec-p384"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "ec-p521"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2048"),
    ],
)
@pytest.mark.django_db
def test_default_profile_accepts_every_aws_key_type(
    client,  # noqa: ANN001
    profile,  # noqa: ANN001
    station_token,  # noqa: ANN001
    key,  # noqa: ANN001
    key_type: str,
) -> None:
    _, token = station_token
    response = post(client, token, {"device": "aws", "csr": _csr_with(key())})
    assert response.status_code == 201, response.content
    assert OnboardingRequest.objects.get().key_type == key_type


@pytest.mark.django_db
def test_default_profile_refuses_rsa_1024(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    weak = _csr_with(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    response = post(client, token, {"device": "aws", "csr": weak})
    assert response.status_code == 422
    assert response.json()["code"] == "csr_key_too_small"
    assert not OnboardingRequest.objects.exists()


def _key_pem(key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
@pytest.mark.parametrize("key_first", [True, False])
@pytest.mark.django_db
def test_a_private_key_sent_along_is_refused_and_not_echoed(
    client,  # noqa: ANN001
    profile,  # noqa: ANN001
    station_token,  # noqa: ANN001
    fmt: serialization.PrivateFormat,
    key_first: bool,
) -> None:
    _, token = station_token
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = _key_pem(key, fmt)
    csr = make_ec_csr(key=key)
    body = key_pem + csr if key_first else csr + key_pem
    response = post(client, token, {"device": "aws", "csr": body})
    assert response.status_code == 422
    assert response.json()["code"] == "csr_private_key_sent"
    secret_line = key_pem.splitlines()[1]
    assert secret_line not in response.content.decode()
    assert "PRIVATE KEY-----" not in response.json()["detail"]
    assert not OnboardingRequest.objects.exists()


@pytest.mark.django_db
def test_more_than_one_pem_block_is_refused(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    response = post(client, token, {"device": "aws", "csr": make_ec_csr() + make_ec_csr()})
    assert response.status_code == 422
    assert response.json() == {
        "code": "csr_multiple_blocks",
        "detail": "The body holds 2 PEM blocks; send exactly one certificate signing request.",
    }
    assert not OnboardingRequest.objects.exists()


def test_validator_codes_for_blocks() -> None:
    with pytest.raises(CsrError) as info:
        csr_validate(
            make_ec_csr() + "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
        )
    assert info.value.code == "csr_multiple_blocks"
    assert csr_validate(make_ec_csr()).key_type == "ec-p256"  # one block is still fine


@pytest.mark.parametrize("depth", [40, 900, 5000])
@pytest.mark.django_db
def test_deeply_nested_json_is_a_422(client, profile, station_token, depth: int) -> None:  # noqa: ANN001
    _, token = station_token
    raw = ('{"device": "aws", "csr": ' + "[" * depth + "]" * depth + "}").encode()
    response = post(client, token, raw=raw)
    assert response.status_code == 422, response.content
    assert response.json() == {
        "code": "json_too_deep",
        "detail": "The JSON body nests deeper than 32 levels.",
    }
    assert not OnboardingRequest.objects.exists()


@pytest.mark.django_db
def test_deeply_nested_json_on_the_staff_api_is_a_422(staff_user) -> None:  # noqa: ANN001
    from django.test import Client

    from portal.services import api_token_create

    token = api_token_create(username=staff_user.username)[1]
    depth = 5000
    response = Client().post(
        "/api/v1/connections",
        data=('{"name": ' + "[" * depth + "]" * depth + "}").encode(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "json_too_deep"


@pytest.mark.django_db
def test_pending_requests_are_capped_per_station_with_retry_after(
    client,  # noqa: ANN001
    profile,  # noqa: ANN001
    station_token,  # noqa: ANN001
    other_station_token,  # noqa: ANN001
    settings,  # noqa: ANN001
) -> None:
    settings.SIGNING_MAX_PENDING_PER_STATION = 2
    _, token = station_token
    assert post(client, token, {"device": "d1", "csr": make_ec_csr()}).status_code == 201
    assert post(client, token, {"device": "d2", "csr": make_ec_csr()}).status_code == 201
    refused = post(client, token, {"device": "d3", "csr": make_ec_csr()})
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_pending_requests"
    assert "waiting for approval" in refused.json()["detail"]
    assert int(refused["Retry-After"]) > 0
    # a device's own new key replaces its pending request: not counted against the cap
    assert post(client, token, {"device": "d2", "csr": make_ec_csr()}).status_code == 201
    # another station has its own cap
    _, other = other_station_token
    assert post(client, other, {"device": "d1", "csr": make_ec_csr()}).status_code == 201
    assert OnboardingRequest.objects.filter(status="pending").count() == 3
