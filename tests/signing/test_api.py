"""Station API: openssl CSRs accepted and signed, openssl verifies, errors keep their shape."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devices.models import MqttDevice
from signing.models import IssuedCertificate, OnboardingRequest
from signing.services import onboarding_requests_approve, onboarding_requests_sign
from tests.signing.conftest import make_ec_csr

URL = "/api/v1/onboarding-requests"


def post(client, token: str, body: object, raw: bytes | None = None):  # noqa: ANN001, ANN201
    data = raw if raw is not None else json.dumps(body)
    return client.post(
        URL, data=data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def get(client, token: str, request_id: int):  # noqa: ANN001, ANN201
    return client.get(f"{URL}/{request_id}", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.django_db
def test_openssl_csr_is_signed_and_verifies_with_openssl(
    client,
    profile,
    station_token,
    openssl_csr,
    tmp_path: Path,
    kind: str,  # noqa: ANN001
) -> None:
    station, token = station_token
    pem, key_path = openssl_csr(kind)
    response = post(client, token, {"device": "aws", "csr": pem, "comment": "boiler room"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["device"] == "aws"
    assert "certificate" not in body

    assert onboarding_requests_approve(ids=[body["id"]], actor=None) == [body["id"]]
    assert get(client, token, body["id"]).json()["status"] == "approved"
    result = onboarding_requests_sign(ids=[body["id"]])
    assert result.issued == 1

    issued = get(client, token, body["id"]).json()
    assert issued["status"] == "issued"
    cert_path = tmp_path / "device.pem"
    ca_path = tmp_path / "ca.pem"
    cert_path.write_text(issued["certificate"])
    ca_path.write_text(issued["chain"][0])
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_path), str(cert_path)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"{cert_path}: OK" in verify.stdout
    # The certificate holds the device's key (the one openssl generated).
    mod_cert = subprocess.run(
        ["openssl", "x509", "-in", str(cert_path), "-noout", "-pubkey"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mod_key = subprocess.run(
        ["openssl", "pkey", "-in", str(key_path), "-pubout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert mod_cert == mod_key

    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    # Subject from the profile only: the CSR's CN/O/C are ignored.
    assert cert.subject.rfc4514_string() == "CN=st-001:aws,OU=Fleet,O=Example GmbH,C=DE"
    assert cert.serial_number.bit_length() <= 159
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca is False
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    ca_cert = x509.load_pem_x509_certificate(issued["chain"][0].encode())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    with pytest.raises(x509.ExtensionNotFound):  # the CSR's SAN request is not copied
        ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert {e.oid for e in ext} == {
        x509.oid.ExtensionOID.BASIC_CONSTRAINTS,
        x509.oid.ExtensionOID.KEY_USAGE,
        x509.oid.ExtensionOID.EXTENDED_KEY_USAGE,
        x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }

    row = IssuedCertificate.objects.get(request_id=body["id"])
    device = MqttDevice.objects.get(station=station, name="aws")
    assert device.status == MqttDevice.Status.CERTIFICATE_ISSUED
    assert device.client_id == "st-001:aws" == row.common_name
    assert device.current_certificate == row
    assert row.renew_after > row.not_before
    lifetime = row.not_after - row.not_before
    assert 0.6 * lifetime < row.renew_after - row.not_before < 0.75 * lifetime


@pytest.mark.django_db
def test_same_pending_request_is_idempotent(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    pem = make_ec_csr()
    first = post(client, token, {"device": "aws", "csr": pem})
    again = post(client, token, {"device": "aws", "csr": pem, "comment": "retry"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert OnboardingRequest.objects.count() == 1


@pytest.mark.django_db
def test_unknown_device_is_created_for_the_station(client, profile, station_token) -> None:  # noqa: ANN001
    station, token = station_token
    assert post(client, token, {"device": "hand-made", "csr": make_ec_csr()}).status_code == 201
    device = MqttDevice.objects.get(station=station, name="hand-made")
    assert device.status == MqttDevice.Status.AWAITING_APPROVAL


@pytest.mark.django_db
def test_wrong_token_is_401(client, profile, station_token) -> None:  # noqa: ANN001
    response = post(client, "not-a-token", {"device": "aws", "csr": make_ec_csr()})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    missing = client.post(URL, data="{}", content_type="application/json")
    assert missing.status_code == 401
    assert client.get(f"{URL}/1").status_code == 401
    assert OnboardingRequest.objects.count() == 0


@pytest.mark.django_db
def test_other_stations_request_is_404(
    client,
    profile,
    station_token,
    other_station_token,  # noqa: ANN001
) -> None:
    _, token = station_token
    _, other = other_station_token
    created = post(client, token, {"device": "aws", "csr": make_ec_csr()}).json()
    response = get(client, other, created["id"])
    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "detail": f"There is no onboarding request {created['id']}.",
    }
    assert get(client, token, 10**30).status_code in (404, 422)
    assert get(client, token, created["id"]).status_code == 200


@pytest.mark.django_db
def test_rate_limit_is_429(client, profile, station_token, settings) -> None:  # noqa: ANN001
    settings.SIGNING_RATE_LIMIT_PER_MINUTE = 3
    _, token = station_token
    for i in range(3):
        assert post(client, token, {"device": f"d{i}", "csr": make_ec_csr()}).status_code == 201
    response = post(client, token, {"device": "d9", "csr": make_ec_csr()})
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60


@pytest.mark.django_db
def test_profile_key_types_are_enforced(client, profile, station_token) -> None:  # noqa: ANN001
    profile.accepted_key_types = ["ec-p256", "rsa-2048"]
    profile.save(update_fields=["accepted_key_types"])
    _, token = station_token
    key = ec.generate_private_key(ec.SECP384R1())
    response = post(client, token, {"device": "aws", "csr": make_ec_csr(key=key)})
    assert response.status_code == 422
    assert response.json()["code"] == "csr_key_type_not_accepted"
    assert "EC P384" in response.json()["detail"]


def test_openapi_documents_the_onboarding_endpoints(client) -> None:  # noqa: ANN001
    schema = client.get("/api/v1/openapi.json").json()
    post_op = schema["paths"]["/api/v1/onboarding-requests"]["post"]
    body = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"device", "csr", "comment", "renewal", "proof"}
    assert "$ref" not in json.dumps(body)
    assert "/api/v1/onboarding-requests/{request_id}" in schema["paths"]


@pytest.mark.django_db
def test_subject_has_optional_fields_from_profile(client, ca, station_token) -> None:  # noqa: ANN001
    from signing.services import signing_profile_create
    from tests.signing.conftest import CA_PASSWORD

    signing_profile_create(
        name="full",
        ca=ca,
        ca_password=CA_PASSWORD,
        country="US",
        cn_template="thing:{station}:{device}",
        is_default=True,
        organization="O1",
        locality="Town",
        state="CA",
        dn_qualifier="q1",
        serial_number="SN-7",
        validity_days=30,
    )
    _, token = station_token
    created = post(client, token, {"device": "aws", "csr": make_ec_csr()}).json()
    onboarding_requests_approve(ids=[created["id"]])
    onboarding_requests_sign(ids=[created["id"]])
    cert = x509.load_pem_x509_certificate(
        get(client, token, created["id"]).json()["certificate"].encode()
    )
    attrs = {a.oid: a.value for a in cert.subject}
    assert attrs[NameOID.COMMON_NAME] == "thing:st-001:aws"
    assert attrs[NameOID.DN_QUALIFIER] == "q1"
    assert attrs[NameOID.SERIAL_NUMBER] == "SN-7"
    assert attrs[NameOID.STATE_OR_PROVINCE_NAME] == "CA"
    assert attrs[NameOID.LOCALITY_NAME] == "Town"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30


@pytest.mark.django_db
def test_same_key_again_after_signing_gets_the_issued_request_not_a_second_certificate(
    client,
    profile,
    station_token,  # noqa: ANN001
) -> None:
    """An agent whose POST timed out after the portal saved it posts the same CSR again; by
    then staff may have approved and the worker signed it. Found by the 1,000-station
    benchmark: the retry used to create a second request and a second certificate for the
    same key, and the agent then waited on a request nobody approved."""
    _, token = station_token
    pem = make_ec_csr()
    first = post(client, token, {"device": "aws", "csr": pem}).json()
    onboarding_requests_approve(ids=[first["id"]])
    onboarding_requests_sign(ids=[first["id"]])
    again = post(client, token, {"device": "aws", "csr": pem})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert get(client, token, first["id"]).json()["status"] == "issued"
    assert OnboardingRequest.objects.count() == 1
    assert IssuedCertificate.objects.count() == 1


@pytest.mark.django_db
def test_same_key_after_revocation_is_a_new_request(client, profile, station_token) -> None:  # noqa: ANN001
    from signing.services import certificates_revoke

    _, token = station_token
    pem = make_ec_csr()
    first = post(client, token, {"device": "aws", "csr": pem}).json()
    onboarding_requests_approve(ids=[first["id"]])
    onboarding_requests_sign(ids=[first["id"]])
    certificates_revoke(
        ids=list(IssuedCertificate.objects.values_list("pk", flat=True)), reason="keyCompromise"
    )
    again = post(client, token, {"device": "aws", "csr": pem})
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
