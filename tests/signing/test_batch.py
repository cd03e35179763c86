"""The signing batch path: what a batch writes, per-row failures, and bulk approval."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from devices.models import MqttDevice
from portal.models import AuditEvent
from signing.crypto import fingerprint_sha256, serial_with_colons
from signing.keystore import ca_certificate
from signing.models import IssuedCertificate, OnboardingRequest
from signing.services import (
    onboarding_request_submit,
    onboarding_requests_approve,
    onboarding_requests_fail,
    onboarding_requests_reject,
    onboarding_requests_sign,
)
from tests.signing.conftest import make_ec_csr


def _submit(station, names: list[str]) -> list[OnboardingRequest]:  # noqa: ANN001
    return [
        onboarding_request_submit(station=station, device_name=n, csr=make_ec_csr())[0]
        for n in names
    ]


@pytest.mark.django_db
def test_a_batch_writes_certificates_that_match_their_rows(profile, station_token) -> None:  # noqa: ANN001
    station, _ = station_token
    requests = _submit(station, ["d1", "d2", "d3"])
    ids = [r.pk for r in requests]
    assert onboarding_requests_approve(ids=ids, actor_label="test") == sorted(ids)
    result = onboarding_requests_sign(ids=ids)
    assert (result.issued, result.failed, result.skipped) == (3, 0, 0)

    ca_cert = ca_certificate(profile.ca)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    for request in requests:
        request.refresh_from_db()
        assert request.status == "issued"
        assert request.issued_at is not None
        row = IssuedCertificate.objects.get(request=request)
        cert = x509.load_pem_x509_certificate(row.certificate_pem.encode())
        cert.verify_directly_issued_by(ca_cert)
        # the certified key is the one the station proved it holds
        csr = x509.load_pem_x509_csr(request.csr_pem.encode())
        assert cert.public_key() == csr.public_key()
        # the row tells the truth about the certificate
        assert row.serial == serial_with_colons(cert.serial_number)
        assert row.fingerprint_sha256 == fingerprint_sha256(cert)
        cn = f"st-001:{request.device.name}"
        assert row.common_name == cn
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        assert row.subject == f"CN={cn},OU=Fleet,O=Example GmbH,C=DE"
        assert row.subject == cert.subject.rfc4514_string()
        assert row.issuer == ca_cert.subject.rfc4514_string()
        assert (row.not_before, row.not_after) == (
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
        )
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(
            days=365, minutes=5
        )
        assert row.not_before < row.renew_after < row.not_after
        assert (row.status, row.revocation_reason, row.profile_id, row.ca_id) == (
            "active",
            "",
            profile.pk,
            profile.ca_id,
        )
        assert row.superseded_at is None
        assert row.revoked_at is None
        # extensions: set by the portal only, in this order
        ext = cert.extensions
        assert [e.oid for e in ext] == [
            ExtensionOID.BASIC_CONSTRAINTS,
            ExtensionOID.KEY_USAGE,
            ExtensionOID.EXTENDED_KEY_USAGE,
            ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ]
        assert ext.get_extension_for_class(x509.BasicConstraints).critical
        assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
        assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ]
        assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == (
            x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        )  # type: ignore[arg-type]
        assert (
            ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            == ca_ski.digest
        )
        device = MqttDevice.objects.get(pk=request.device_id)
        assert device.current_certificate_id == row.pk
        assert device.client_id == cn
        assert device.status == MqttDevice.Status.CERTIFICATE_ISSUED
    assert len({c.serial for c in IssuedCertificate.objects.all()}) == 3
    batch = AuditEvent.objects.get(action="certificate_sign_batch")
    assert batch.detail["requests"] == sorted(ids)
    assert sorted(batch.detail["serials"]) == sorted(
        IssuedCertificate.objects.values_list("serial", flat=True)
    )

    # signing the same ids again finds nothing to do: no second certificate
    again = onboarding_requests_sign(ids=ids)
    assert (again.issued, again.failed, again.skipped) == (0, 0, 3)
    assert IssuedCertificate.objects.count() == 3


@pytest.mark.django_db
def test_a_stored_csr_with_another_key_than_approved_fails_alone(profile, station_token) -> None:  # noqa: ANN001
    station, _ = station_token
    good, swapped = _submit(station, ["d1", "d2"])
    onboarding_requests_approve(ids=[good.pk, swapped.pk])
    # the CSR verified at submission is what gets signed: a row changed afterwards
    # (another key than the fingerprint staff approved) is refused, not signed
    OnboardingRequest.objects.filter(pk=swapped.pk).update(csr_pem=make_ec_csr())
    result = onboarding_requests_sign(ids=[good.pk, swapped.pk])
    assert (result.issued, result.failed) == (1, 1)
    swapped.refresh_from_db()
    assert swapped.status == "failed"
    assert swapped.issued_at is None
    assert "does not hold the public key that was approved" in swapped.reason
    assert not IssuedCertificate.objects.filter(request=swapped).exists()
    assert IssuedCertificate.objects.filter(request=good).count() == 1
    assert AuditEvent.objects.filter(
        action="certificate_sign_failed", object_id=str(swapped.pk)
    ).exists()


@pytest.mark.django_db
def test_a_wrong_profile_password_fails_the_batch_with_a_sentence(profile, station_token) -> None:  # noqa: ANN001
    station, _ = station_token
    requests = _submit(station, ["d1", "d2"])
    onboarding_requests_approve(ids=[r.pk for r in requests])
    type(profile).objects.filter(pk=profile.pk).update(ca_password="not-the-password")
    result = onboarding_requests_sign(ids=[r.pk for r in requests])
    assert (result.issued, result.failed) == (0, 2)
    assert set(OnboardingRequest.objects.values_list("status", flat=True)) == {"failed"}
    assert "holds a wrong password" in OnboardingRequest.objects.first().reason
    assert not IssuedCertificate.objects.exists()


@pytest.mark.django_db
def test_bulk_approve_approves_only_pending_audits_each_and_enqueues_batches(
    profile,
    station_token,
    monkeypatch,
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    from signing import tasks
    from signing.services import decisions as request_services

    station, _ = station_token
    monkeypatch.setattr(request_services, "BATCH_SIZE", 2)
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.sign_batch, "apply_async", lambda args, **_: sent.append(*args))
    requests = _submit(station, ["d1", "d2", "d3", "d4", "d5"])
    ids = [r.pk for r in requests]
    OnboardingRequest.objects.filter(pk=ids[0]).update(status="rejected")
    with django_capture_on_commit_callbacks(execute=True):
        approved = onboarding_requests_approve(
            ids=[*reversed(ids), ids[1]], actor_label="bulk test"
        )
    assert approved == ids[1:]
    assert sent == [ids[1:3], ids[3:5]]
    rows = OnboardingRequest.objects.filter(pk__in=ids[1:])
    assert {(r.status, r.decided_by_label) for r in rows} == {("approved", "bulk test")}
    assert all(r.decided_at is not None and r.decided_at == r.sign_enqueued_at for r in rows)
    events = AuditEvent.objects.filter(action="onboarding_approve").order_by("object_id")
    assert [e.object_id for e in events] == sorted(str(i) for i in ids[1:])
    assert {
        (e.actor_label, e.object_type, e.object_repr == f"#{e.object_id}", str(e.detail))
        for e in events
    } == {("bulk test", "signing.onboardingrequest", True, "{}")}
    assert all(e.at == rows[0].decided_at for e in events)
    # approving again changes nothing and enqueues nothing
    with django_capture_on_commit_callbacks(execute=True):
        assert onboarding_requests_approve(ids=ids) == []
    assert len(sent) == 2


@pytest.mark.django_db
def test_approve_all_pending(profile, station_token) -> None:  # noqa: ANN001
    station, _ = station_token
    requests = _submit(station, ["d1", "d2"])
    assert onboarding_requests_approve(ids=None) == sorted(r.pk for r in requests)
    assert onboarding_requests_approve(ids=None) == []


def test_transitions_table_names_the_sources_of_each_status() -> None:
    Status = OnboardingRequest.Status
    assert OnboardingRequest.statuses_before(Status.APPROVED) == [Status.PENDING]
    assert OnboardingRequest.statuses_before(Status.REJECTED) == [Status.PENDING]
    assert OnboardingRequest.statuses_before(Status.ISSUED) == [Status.APPROVED]
    assert OnboardingRequest.statuses_before(Status.FAILED) == [Status.APPROVED]
    assert OnboardingRequest.statuses_before(Status.PENDING) == []


@pytest.mark.django_db
def test_no_service_moves_a_request_against_the_transitions(profile, station_token) -> None:  # noqa: ANN001
    station, _ = station_token
    requests = _submit(station, ["d1", "d2", "d3"])
    ids = [r.pk for r in requests]
    OnboardingRequest.objects.filter(pk=ids[0]).update(status="issued")
    OnboardingRequest.objects.filter(pk=ids[1]).update(status="rejected")
    OnboardingRequest.objects.filter(pk=ids[2]).update(status="failed")
    assert onboarding_requests_approve(ids=ids) == []
    assert onboarding_requests_reject(ids=ids, reason="no") == []
    assert onboarding_requests_fail(ids=ids, reason="gave up") == 0
    assert onboarding_requests_sign(ids=ids).issued == 0
    assert list(
        OnboardingRequest.objects.filter(pk__in=ids).order_by("pk").values_list("status", flat=True)
    ) == ["issued", "rejected", "failed"]
