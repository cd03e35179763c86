"""The PKCS#11 key backend against SoftHSM2: a CA key generated in the token signs through
the normal paths, never leaves it, and the row holds no secret."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.core.management import call_command

from devices.models import MqttDevice
from portal.models import AuditEvent
from signing import hsm, tasks
from signing.csr import csr_validate
from signing.errors import KeyStoreUnavailable
from signing.keystore import ca_certificate, get_key_store
from signing.models import CertificateAuthority, IssuedCertificate, OnboardingRequest
from signing.services import (
    ca_generate,
    onboarding_requests_approve,
    signing_profile_create,
)
from signing.services.requests import BATCH_SIZE
from tests.signing.conftest import make_ec_csr

pytestmark = pytest.mark.django_db


def _hsm_ca(alias: str = "hsm-ca", key_type: str = "ec-p256") -> CertificateAuthority:
    return ca_generate(
        alias=alias,
        dn=f"CN={alias},O=Example,C=DE",
        password="",
        key_type=key_type,
        backend="pkcs11",
    )


def _probe(ca: CertificateAuthority) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe")]))
        .issuer_name(ca_certificate(ca).subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    return get_key_store().sign(ca, "", builder)


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "ec-p521", "rsa-2048"])
def test_a_ca_generated_in_the_token_is_self_signed_and_signs(softhsm, key_type: str) -> None:  # noqa: ANN001
    ca = _hsm_ca(key_type=key_type)
    assert ca.key_backend == "pkcs11"
    assert ca.private_key_pem == ""
    assert ca.pkcs11_token_label == softhsm["label"]
    assert ca.pkcs11_key_label == "hsm-ca"
    assert len(ca.pkcs11_key_id) == 32
    ca_cert = ca_certificate(ca)
    ca_cert.verify_directly_issued_by(ca_cert)
    expected = {"ec-p384": hashes.SHA384, "ec-p521": hashes.SHA512}.get(key_type, hashes.SHA256)
    assert isinstance(ca_cert.signature_hash_algorithm, expected)
    public = ca_cert.public_key()
    assert isinstance(
        public, rsa.RSAPublicKey if key_type.startswith("rsa") else ec.EllipticCurvePublicKey
    )
    _probe(ca).verify_directly_issued_by(ca_cert)


def test_the_key_is_sensitive_and_not_extractable(softhsm) -> None:  # noqa: ANN001
    ca = _hsm_ca()
    flags = hsm.key_attributes(
        hsm.TokenKey(ca.pkcs11_token_label, ca.pkcs11_key_label, ca.pkcs11_key_id)
    )
    assert flags == {"sensitive": True, "extractable": False, "never_extractable": True}


def test_1000_csrs_signed_through_the_approval_path(softhsm, station_token) -> None:  # noqa: ANN001
    ca = _hsm_ca()
    profile = signing_profile_create(
        name="hsm", ca=ca, ca_password="", country="DE", is_default=True
    )
    station, _ = station_token
    # 1,000 pending requests as the station API leaves them (CSR checked by csr_validate)
    devices = MqttDevice.objects.bulk_create(
        [MqttDevice(station=station, name=f"d{i}") for i in range(1000)]
    )
    rows = []
    for device in devices:
        valid = csr_validate(make_ec_csr())
        rows.append(
            OnboardingRequest(
                station=station,
                device=device,
                profile=profile,
                csr_pem=valid.pem,
                key_type=valid.key_type,
                public_key_fingerprint=valid.public_key_fingerprint,
            )
        )
    ids = [r.pk for r in OnboardingRequest.objects.bulk_create(rows)]
    approved = onboarding_requests_approve(ids=ids, actor_label="test")
    assert len(approved) == 1000
    for i in range(0, len(approved), BATCH_SIZE):  # what the worker runs per enqueued batch
        tasks.sign_batch.apply(args=[approved[i : i + BATCH_SIZE]]).get()
    assert OnboardingRequest.objects.filter(status="issued").count() == 1000
    ca_cert = ca_certificate(ca)
    rows = list(IssuedCertificate.objects.filter(ca=ca).values_list("certificate_pem", flat=True))
    assert len(rows) == 1000
    for pem in rows:
        x509.load_pem_x509_certificate(pem.encode()).verify_directly_issued_by(ca_cert)


def test_create_ca_backend_pkcs11_takes_the_pin_from_the_environment(softhsm, caplog) -> None:  # noqa: ANN001
    out = io.StringIO()
    with caplog.at_level(logging.DEBUG):
        call_command(
            "create_ca",
            "--alias",
            "cmd-hsm",
            "--dn",
            "CN=Cmd HSM CA,C=DE",
            "--backend",
            "pkcs11",
            stdout=out,
        )
    ca = CertificateAuthority.objects.get(alias="cmd-hsm")
    assert ca.key_backend == "pkcs11"
    assert "not extractable" in out.getvalue()
    pin = softhsm["pin"]
    assert pin not in out.getvalue()
    assert pin not in caplog.text
    for event in AuditEvent.objects.all():
        assert pin not in str(event.detail)
    for value in CertificateAuthority.objects.values_list():
        assert pin not in str(value)


def test_a_wrong_pin_is_a_sentence_not_a_traceback(softhsm, settings) -> None:  # noqa: ANN001
    ca = _hsm_ca()
    settings.PKCS11_PIN = "0000-wrong"
    hsm.reset()
    with pytest.raises(KeyStoreUnavailable) as exc:
        get_key_store().check_password(ca, "")
    assert "PKCS11_PIN does not log in" in str(exc.value)
    assert "0000-wrong" not in str(exc.value)


def test_a_profile_on_an_unreachable_token_is_refused(softhsm, settings) -> None:  # noqa: ANN001
    ca = _hsm_ca()
    settings.PKCS11_TOKEN_LABEL = "other"
    CertificateAuthority.objects.filter(pk=ca.pk).update(pkcs11_token_label="missing-token")
    ca.refresh_from_db()
    hsm.reset()
    with pytest.raises(ValidationError) as exc:
        signing_profile_create(name="hsm", ca=ca, ca_password="", country="DE")
    assert "There is no PKCS#11 token 'missing-token'" in exc.value.message_dict["ca"][0]


def test_without_pkcs11_settings_generation_is_refused_with_a_sentence(settings) -> None:
    settings.PKCS11_MODULE = ""
    with pytest.raises(ValidationError) as exc:
        _hsm_ca()
    assert "PKCS11_MODULE" in exc.value.message_dict["backend"][0]
    assert not CertificateAuthority.objects.exists()


def test_a_batch_on_an_unreachable_token_fails_with_a_sentence(
    softhsm, settings, station_token
) -> None:  # noqa: ANN001
    from signing.services import onboarding_request_submit, onboarding_requests_sign

    ca = _hsm_ca()
    signing_profile_create(name="hsm", ca=ca, ca_password="", country="DE", is_default=True)
    station, _ = station_token
    request, _ = onboarding_request_submit(station=station, device_name="d1", csr=make_ec_csr())
    onboarding_requests_approve(ids=[request.pk])
    settings.PKCS11_PIN = "0000-wrong"
    hsm.reset()
    assert onboarding_requests_sign(ids=[request.pk]).failed == 1
    request.refresh_from_db()
    assert request.status == "failed"
    assert "CA 'hsm-ca' cannot sign: PKCS11_PIN does not log in" in request.reason
    assert "0000-wrong" not in request.reason
