"""Renewal: automatic approval, superseded on fetch, refused after revocation; check_renewals."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from portal.models import AuditEvent
from signing.models import IssuedCertificate, OnboardingRequest, SigningProfile
from signing.services import (
    certificate_revoke,
    onboarding_requests_approve,
    onboarding_requests_sign,
)
from tests.signing.conftest import make_ec_csr

URL = "/api/v1/onboarding-requests"


def _post(client, token, body):  # noqa: ANN001, ANN201
    return client.post(
        URL,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def _onboard(client, token) -> IssuedCertificate:  # noqa: ANN001
    created = _post(client, token, {"device": "aws", "csr": make_ec_csr()}).json()
    onboarding_requests_approve(ids=[created["id"]])
    onboarding_requests_sign(ids=[created["id"]])
    assert (
        client.get(f"{URL}/{created['id']}", HTTP_AUTHORIZATION=f"Bearer {token}").json()["status"]
        == "issued"
    )
    return IssuedCertificate.objects.get(request_id=created["id"])


@pytest.mark.django_db
def test_renewal_is_signed_without_a_human_and_supersedes_on_fetch(
    client,
    profile,
    station_token,  # noqa: ANN001
) -> None:
    _, token = station_token
    old = _onboard(client, token)
    response = _post(client, token, {"device": "aws", "csr": make_ec_csr(), "renewal": True})
    assert response.status_code == 201
    renewal = response.json()
    assert renewal["status"] == "approved"
    assert renewal["renewal"] is True
    row = OnboardingRequest.objects.get(pk=renewal["id"])
    assert row.decided_by is None
    assert row.decided_by_label == "renewal policy (automatic)"
    assert onboarding_requests_sign(ids=[row.pk]).issued == 1
    old.refresh_from_db()
    assert old.status == "active"  # still valid until the device has fetched the new one
    fetched = client.get(f"{URL}/{row.pk}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert fetched["status"] == "issued"
    new = IssuedCertificate.objects.get(request=row)
    assert fetched["certificate"] == new.certificate_pem
    old.refresh_from_db()
    assert old.status == "superseded"
    assert old.superseded_at is not None
    assert new.status == "active"
    assert new.common_name == old.common_name
    assert new.device.current_certificate == new
    assert AuditEvent.objects.filter(action="renewal_auto_approve").count() == 1
    batch = AuditEvent.objects.filter(action="certificate_sign_batch").latest("id")
    assert batch.detail["renewals"] == [row.pk]
    assert batch.detail["serials"] == [new.serial]
    assert AuditEvent.objects.filter(action="certificate_supersede").count() == 1


@pytest.mark.django_db
def test_revoked_devices_renewal_is_refused(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    cert = _onboard(client, token)
    certificate_revoke(certificate=cert, reason="keyCompromise", comment="Stolen controller.")
    response = _post(client, token, {"device": "aws", "csr": make_ec_csr(), "renewal": True})
    assert response.status_code == 403
    assert response.json()["code"] == "certificate_revoked"
    assert OnboardingRequest.objects.filter(is_renewal=True).count() == 0


@pytest.mark.django_db
def test_renewal_needs_a_certificate_and_the_owning_station(
    client,
    profile,
    station_token,
    other_station_token,  # noqa: ANN001
) -> None:
    _, token = station_token
    _, other = other_station_token
    first = _post(client, token, {"device": "aws", "csr": make_ec_csr(), "renewal": True})
    assert first.status_code == 422
    assert first.json()["code"] == "renewal_without_certificate"
    _onboard(client, token)
    stolen = _post(client, other, {"device": "aws", "csr": make_ec_csr(), "renewal": True})
    assert stolen.status_code == 422
    assert OnboardingRequest.objects.filter(is_renewal=True).count() == 0


@pytest.mark.django_db
def test_manual_policy_renewal_waits_for_approval(client, profile, station_token) -> None:  # noqa: ANN001
    SigningProfile.objects.filter(pk=profile.pk).update(renewal_policy="manual")
    _, token = station_token
    _onboard(client, token)
    response = _post(client, token, {"device": "aws", "csr": make_ec_csr(), "renewal": True})
    assert response.status_code == 201
    assert response.json()["status"] == "pending"


@pytest.mark.django_db
def test_check_renewals_marks_due_and_warns_about_ca_expiry(
    client,
    ca,
    profile,
    station_token,  # noqa: ANN001
) -> None:
    _, token = station_token
    cert = _onboard(client, token)
    out, err = StringIO(), StringIO()
    call_command("check_renewals", stdout=out, stderr=err)
    assert "Marked 0 certificates" in out.getvalue()
    IssuedCertificate.objects.filter(pk=cert.pk).update(
        renew_after=timezone.now() - timedelta(minutes=1)
    )
    type(ca).objects.filter(pk=ca.pk).update(not_after=timezone.now() + timedelta(days=10))
    call_command("check_renewals", stdout=out, stderr=err)
    assert "Marked 1 certificate due" in out.getvalue()
    assert "CA 'test-ca' expires on" in err.getvalue()
    cert.refresh_from_db()
    assert cert.renewal_due_at is not None
