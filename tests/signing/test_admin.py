"""Admin: approval gated by its own permission, reject/revoke with reasons, write-only password."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from devices.services import station_create
from portal.models import AuditEvent
from signing.models import IssuedCertificate, OnboardingRequest, SigningProfile
from signing.services import (
    onboarding_request_submit,
    onboarding_requests_approve,
    onboarding_requests_sign,
)
from tests.signing.conftest import CA_PASSWORD, make_ec_csr

QUEUE = "admin:signing_onboardingrequest_changelist"


def _requests(n: int) -> list[OnboardingRequest]:
    station, _ = station_create(name="st-adm")
    return [
        onboarding_request_submit(
            station=station, device_name=f"d{i}", csr=make_ec_csr(), comment="hello"
        )[0]
        for i in range(n)
    ]


def _grant(user, *codenames: str) -> None:  # noqa: ANN001
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


@pytest.mark.django_db
def test_staff_without_permission_cannot_approve(client, staff_user, profile) -> None:  # noqa: ANN001
    _grant(staff_user, "view_onboardingrequest")
    rows = _requests(2)
    client.force_login(staff_user)
    page = client.get(reverse(QUEUE))
    assert page.status_code == 200
    assert b"approve_selected" not in page.content
    response = client.post(
        reverse(QUEUE),
        {"action": "approve_selected", "_selected_action": [r.pk for r in rows]},
        follow=True,
    )
    assert response.status_code == 200
    assert set(OnboardingRequest.objects.values_list("status", flat=True)) == {"pending"}
    assert not AuditEvent.objects.filter(action="onboarding_approve").exists()


@pytest.mark.django_db
def test_approver_approves_many_with_a_counted_message(client, staff_user, profile) -> None:  # noqa: ANN001
    _grant(staff_user, "view_onboardingrequest", "approve_onboardingrequest")
    rows = _requests(3)
    client.force_login(staff_user)
    page = client.get(reverse(QUEUE))
    assert b"approve_selected" in page.content
    assert b"st-adm" in page.content
    response = client.post(
        reverse(QUEUE),
        {"action": "approve_selected", "_selected_action": [r.pk for r in rows]},
        follow=True,
    )
    assert "Approved 3 requests" in response.content.decode()
    assert set(OnboardingRequest.objects.values_list("status", flat=True)) == {"approved"}
    row = OnboardingRequest.objects.get(pk=rows[0].pk)
    assert row.decided_by == staff_user
    assert row.decided_at is not None
    assert AuditEvent.objects.filter(action="onboarding_approve").count() == 3


@pytest.mark.django_db
def test_reject_asks_for_a_reason_first(client, staff_user, profile) -> None:  # noqa: ANN001
    _grant(staff_user, "view_onboardingrequest", "approve_onboardingrequest")
    rows = _requests(2)
    client.force_login(staff_user)
    data = {"action": "reject_selected", "_selected_action": [r.pk for r in rows]}
    form = client.post(reverse(QUEUE), data)
    assert form.status_code == 200
    assert b'name="reason"' in form.content
    assert set(OnboardingRequest.objects.values_list("status", flat=True)) == {"pending"}
    done = client.post(
        reverse(QUEUE), {**data, "apply": "1", "reason": "Unknown site."}, follow=True
    )
    assert "Rejected 2 requests." in done.content.decode()
    assert set(OnboardingRequest.objects.values_list("reason", flat=True)) == {"Unknown site."}
    assert set(OnboardingRequest.objects.values_list("status", flat=True)) == {"rejected"}


@pytest.mark.django_db
def test_certificates_are_read_only_revocable_and_downloadable(
    client,
    staff_user,
    profile,  # noqa: ANN001
) -> None:
    _grant(staff_user, "view_issuedcertificate", "revoke_issuedcertificate")
    rows = _requests(1)
    onboarding_requests_approve(ids=[rows[0].pk])
    onboarding_requests_sign(ids=[rows[0].pk])
    cert = IssuedCertificate.objects.get()
    client.force_login(staff_user)
    changelist = reverse("admin:signing_issuedcertificate_changelist")
    page = client.get(changelist)
    assert cert.serial.encode() in page.content
    assert ":" in cert.serial
    detail = client.get(reverse("admin:signing_issuedcertificate_change", args=[cert.pk]))
    assert cert.fingerprint_sha256.encode() in detail.content
    assert b"Delete" not in detail.content
    pem = client.get(reverse("admin:signing_issuedcertificate_pem", args=[cert.pk]))
    assert pem.content.decode() == cert.certificate_pem
    assert (
        client.post(reverse("admin:signing_issuedcertificate_delete", args=[cert.pk])).status_code
        == 403
    )
    data = {
        "action": "revoke_selected",
        "_selected_action": [cert.pk],
        "apply": "1",
        "reason": "keyCompromise",
        "comment": "Key compromised.",
    }
    done = client.post(changelist, data, follow=True)
    assert "Revoked 1 certificate." in done.content.decode()
    cert.refresh_from_db()
    assert cert.status == "revoked"
    assert (cert.revocation_reason, cert.revocation_comment) == (
        "keyCompromise",
        "Key compromised.",
    )
    assert AuditEvent.objects.filter(action="certificate_revoke").count() == 1


@pytest.mark.django_db
def test_profile_password_is_write_only_and_checked(client, superuser, ca, profile) -> None:  # noqa: ANN001
    client.force_login(superuser)
    url = reverse("admin:signing_signingprofile_change", args=[profile.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert CA_PASSWORD.encode() not in page.content
    add = reverse("admin:signing_signingprofile_add")
    base = {
        "name": "p2",
        "ca": ca.pk,
        "cn_template": "{station}:{device}",
        "country": "FR",
        "validity_days": 90,
        "renew_at_percent": 67,
        "renewal_jitter_percent": 5,
        "accepted_key_types": ["ec-p256"],
        "renewal_policy": "automatic",
    }
    wrong = client.post(add, {**base, "ca_password_input": "wrong-password"})
    assert b"does not unlock the private key" in wrong.content
    bad_cn = client.post(
        add, {**base, "cn_template": "{station}-{oops}", "ca_password_input": CA_PASSWORD}
    )
    assert b"is not a placeholder" in bad_cn.content
    ok = client.post(add, {**base, "ca_password_input": CA_PASSWORD})
    assert ok.status_code == 302
    assert SigningProfile.objects.get(name="p2").ca_password == CA_PASSWORD


@pytest.mark.django_db
def test_ca_expiry_warning_on_changelist(client, superuser, ca) -> None:  # noqa: ANN001
    from datetime import timedelta

    from django.utils import timezone

    type(ca).objects.filter(pk=ca.pk).update(not_after=timezone.now() + timedelta(days=30))
    client.force_login(superuser)
    page = client.get(reverse(QUEUE))
    assert b"expires on" in page.content
    assert b"test-ca" in page.content


@pytest.mark.django_db
def test_add_profile_form_starts_with_the_default_key_types_ticked(client, superuser) -> None:  # noqa: ANN001
    """The declared checkbox field once lost the model default: nothing was ticked and the
    form refused to save until staff ticked key types by hand (found by the browser test)."""
    from signing.models import default_accepted_key_types

    client.force_login(superuser)
    form = client.get(reverse("admin:signing_signingprofile_add")).context["adminform"].form
    assert form["accepted_key_types"].value() == default_accepted_key_types()
    html = str(form["accepted_key_types"])
    assert html.count("checked") == len(default_accepted_key_types())
