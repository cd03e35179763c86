"""Renewal: proof of the current key, the renewal point (or staff forcing it), automatic
approval, superseded on fetch, refused after revocation; first requests always wait for
staff; check_renewals."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import call_command
from django.utils import timezone

from fleet_agent.keys import renewal_proof
from portal.models import AuditEvent
from signing.models import IssuedCertificate, OnboardingRequest, SigningProfile
from signing.services import (
    certificate_revoke,
    certificates_force_renewal,
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


def _onboard(client, token, *, due: bool = True) -> IssuedCertificate:  # noqa: ANN001
    """A first certificate for device "aws" (its key in ``.device_key``), by default due."""
    key = ec.generate_private_key(ec.SECP256R1())
    created = _post(client, token, {"device": "aws", "csr": make_ec_csr(key=key)}).json()
    onboarding_requests_approve(ids=[created["id"]])
    onboarding_requests_sign(ids=[created["id"]])
    assert (
        client.get(f"{URL}/{created['id']}", HTTP_AUTHORIZATION=f"Bearer {token}").json()["status"]
        == "issued"
    )
    cert = IssuedCertificate.objects.get(request_id=created["id"])
    if due:
        IssuedCertificate.objects.filter(pk=cert.pk).update(
            renew_after=timezone.now() - timedelta(minutes=1)
        )
        cert.refresh_from_db()
    cert.device_key = key  # type: ignore[attr-defined]
    return cert


def _renewal(cert: IssuedCertificate, *, key=None, station="st-001", at=None) -> dict:  # noqa: ANN001
    """A renewal body with a proof signed by ``key`` (default: the certificate's own key)."""
    csr = make_ec_csr()
    proof = renewal_proof(
        key or cert.device_key,  # type: ignore[attr-defined]
        station=station,
        device="aws",
        csr_pem=csr,
        now=time.time() if at is None else at,
    )
    return {"device": "aws", "csr": csr, "renewal": True, "proof": proof}


@pytest.mark.django_db
def test_renewal_is_signed_without_a_human_and_a_fetch_changes_nothing(
    client,
    profile,
    station_token,  # noqa: ANN001
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, token = station_token
    old = _onboard(client, token)
    response = _post(client, token, _renewal(old))
    assert response.status_code == 201
    renewal = response.json()
    assert renewal["status"] == "approved"
    assert renewal["renewal"] is True
    row = OnboardingRequest.objects.get(pk=renewal["id"])
    assert row.decided_by_label == "renewal policy (automatic)"
    # While the renewal waits for signing, another one is refused: one renewal per point.
    again = _post(client, token, _renewal(old))
    assert again.status_code == 409
    assert again.json()["code"] == "renewal_in_progress"
    assert onboarding_requests_sign(ids=[row.pk]).issued == 1
    with CaptureQueriesContext(connection) as queries:
        fetched = client.get(f"{URL}/{row.pk}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    # A GET never changes state: the old certificate stays active until the new one has
    # proven itself on a connection (the lifecycle supersedes it then).
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []
    assert fetched["status"] == "issued"
    new = IssuedCertificate.objects.get(request=row)
    assert fetched["certificate"] == new.certificate_pem
    old.refresh_from_db()
    assert old.status == "active"
    assert new.status == "active"
    assert new.device.current_certificate == new
    assert AuditEvent.objects.filter(action="certificate_supersede").count() == 0
    assert OnboardingRequest.objects.filter(is_renewal=True).count() == 1


@pytest.mark.django_db
def test_revoked_devices_renewal_is_refused(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    cert = _onboard(client, token)
    certificate_revoke(certificate=cert, reason="keyCompromise", comment="Stolen controller.")
    response = _post(client, token, _renewal(cert))
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
    cert = _onboard(client, token)
    stolen = _post(client, other, _renewal(cert, station="st-002"))
    assert stolen.status_code == 422
    assert OnboardingRequest.objects.filter(is_renewal=True).count() == 0


@pytest.mark.django_db
def test_manual_policy_renewal_waits_for_approval(client, profile, station_token) -> None:  # noqa: ANN001
    SigningProfile.objects.filter(pk=profile.pk).update(renewal_policy="manual")
    _, token = station_token
    cert = _onboard(client, token)
    response = _post(client, token, _renewal(cert))
    assert response.status_code == 201
    assert response.json()["status"] == "pending"


@pytest.mark.django_db
def test_renewal_without_or_with_a_wrong_proof_is_refused(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    cert = _onboard(client, token)
    bare = _post(client, token, {"device": "aws", "csr": make_ec_csr(), "renewal": True})
    assert bare.status_code == 422
    assert bare.json()["code"] == "proof_required"
    thief = ec.generate_private_key(ec.SECP256R1())  # a station token, but not the device key
    for body in (
        _renewal(cert, key=thief),
        _renewal(cert, at=time.time() - 3600),  # an old proof replayed
        _renewal(cert, station="st-other"),  # signed for another station
        {**_renewal(cert), "proof": {"timestamp": int(time.time()), "signature": "AAAA"}},
        {**_renewal(cert), "proof": {"timestamp": int(time.time()), "signature": "%%%"}},
    ):
        response = _post(client, token, body)
        assert response.status_code == 422, body
        assert response.json()["code"] == "proof_invalid"
    # The proof covers the CSR: a valid proof with another CSR does not verify.
    swapped = {**_renewal(cert), "csr": make_ec_csr()}
    assert _post(client, token, swapped).json()["code"] == "proof_invalid"
    assert OnboardingRequest.objects.filter(is_renewal=True).count() == 0
    assert _post(client, token, _renewal(cert)).status_code == 201


@pytest.mark.django_db
def test_renewal_before_the_renewal_point_needs_staff_to_force_it(
    client,
    profile,
    station_token,  # noqa: ANN001
) -> None:
    from provisioning.fleet.agent_config import station_agent_config

    station, token = station_token
    cert = _onboard(client, token, due=False)
    early = _post(client, token, _renewal(cert))
    assert early.status_code == 409
    assert early.json()["code"] == "renewal_too_early"
    assert OnboardingRequest.objects.filter(is_renewal=True).count() == 0
    assert certificates_force_renewal(ids=[cert.pk]) == 1
    cert.refresh_from_db()
    # The desired configuration brings the renewal point forward to the forced time.
    (entry,) = station_agent_config(station)["devices"]
    assert entry["renew_after"] == cert.renewal_forced_at.isoformat()
    assert AuditEvent.objects.filter(action="certificate_force_renewal").count() == 1
    response = _post(client, token, _renewal(cert))
    assert response.status_code == 201
    assert response.json()["status"] == "approved"


@pytest.mark.django_db
def test_a_first_request_for_a_device_with_certificates_waits_for_staff(
    client,
    profile,
    station_token,  # noqa: ANN001
) -> None:
    """The recovery path: a new key by a normal request is never approved automatically."""
    assert profile.renewal_policy == SigningProfile.RenewalPolicy.AUTOMATIC
    _, token = station_token
    cert = _onboard(client, token)
    IssuedCertificate.objects.filter(pk=cert.pk).update(
        not_after=timezone.now() - timedelta(minutes=1)
    )
    expired = _post(client, token, _renewal(cert))
    assert expired.status_code == 422
    assert expired.json()["code"] == "certificate_expired"
    response = _post(client, token, {"device": "aws", "csr": make_ec_csr()})
    assert response.status_code == 201
    assert response.json()["status"] == "pending"
    row = OnboardingRequest.objects.get(pk=response.json()["id"])
    assert row.device.status == "awaiting_approval"
    assert row.decided_at is None


@pytest.mark.django_db
def test_check_renewals_marks_due_and_warns_about_ca_expiry(
    client,
    ca,
    profile,
    station_token,  # noqa: ANN001
) -> None:
    _, token = station_token
    cert = _onboard(client, token, due=False)
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
