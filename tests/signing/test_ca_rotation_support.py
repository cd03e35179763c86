"""What CA rotation needs from the signing side: expiry warnings at each threshold, profiles
switched to a new CA, "renew now" in the agent's configuration and its auto-approval, the
CA page's active counts in one query, the retirement refusals and the archive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from devices.services import station_create
from provisioning.fleet.agent_config import station_agent_config_with_etag
from signing.errors import CaArchived, CaStillInUse
from signing.models import CertificateAuthority, IssuedCertificate, SigningProfile
from signing.services import (
    ca_archive,
    ca_expiry_notices,
    ca_expiry_threshold,
    ca_expiry_warnings,
    ca_generate,
    ca_retirement_check,
    cas_with_active_counts,
    certificates_renew_now,
    onboarding_request_submit,
    signing_profile_create,
    signing_profiles_switch_ca,
)
from tests.signing.conftest import CA_PASSWORD, issue_certificate, make_ec_csr

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("days", "threshold"),
    [(200, None), (180, 180), (120, 180), (90, 90), (45, 90), (30, 30), (8, 30), (7, 7), (1, 7)],
)
def test_expiry_threshold_for_days_left(days: int, threshold: int | None) -> None:
    assert ca_expiry_threshold(days) == threshold


def test_expiry_warnings_at_180_90_30_and_7_days_point_at_rotate_ca() -> None:
    now = timezone.now()
    for alias, days in [("far", 400), ("d170", 170), ("d80", 80), ("d20", 20), ("d5", 5)]:
        ca_generate(alias=alias, dn=f"CN={alias},C=DE", password=CA_PASSWORD, days=days)
    notices = {n.alias: n for n in ca_expiry_notices(now=now)}
    assert set(notices) == {"d170", "d80", "d20", "d5"}
    assert {a: n.threshold for a, n in notices.items()} == {
        "d170": 180,
        "d80": 90,
        "d20": 30,
        "d5": 7,
    }
    for alias, notice in notices.items():
        assert f"inside the {notice.threshold}-day warning" in notice.sentence
        assert "Rotate CA" in notice.sentence
        assert f"manage.py rotate_ca --from {alias} --generate-ca DN" in notice.sentence
    # Soonest first; an archived CA is not warned about.
    assert [n.alias for n in ca_expiry_notices(now=now)] == ["d5", "d20", "d80", "d170"]
    ca_archive(ca=CertificateAuthority.objects.get(alias="d5"))
    assert [w.split("'")[1] for w in ca_expiry_warnings(now=now)] == ["d20", "d80", "d170"]


def test_expired_ca_warning_says_devices_cannot_renew() -> None:
    ca_generate(alias="old", dn="CN=Old,C=DE", password=CA_PASSWORD, days=3)
    (warning,) = ca_expiry_warnings(now=timezone.now() + timedelta(days=4))
    assert "expired on" in warning
    assert "rotate_ca --from old" in warning


def test_check_renewals_prints_the_expiry_warnings(capsys) -> None:  # noqa: ANN001
    from django.core.management import call_command

    ca_generate(alias="soon", dn="CN=Soon,C=DE", password=CA_PASSWORD, days=25)
    call_command("check_renewals")
    err = capsys.readouterr().err
    assert "inside the 30-day warning" in err
    assert "rotate_ca --from soon" in err


def test_the_admin_banner_links_each_expiring_ca_to_rotate_ca(admin_client) -> None:  # noqa: ANN001
    ca = ca_generate(alias="soon", dn="CN=Soon,C=DE", password=CA_PASSWORD, days=25)
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "inside the 30-day warning" in html
    assert reverse("admin:provisioning_carotation_rotate", args=[ca.pk]) in html


def test_profiles_switch_to_the_new_ca_and_a_wrong_password_changes_nothing(profile) -> None:  # noqa: ANN001
    old = profile.ca
    new = ca_generate(alias="new-ca", dn="CN=New,C=DE", password="other-password-1", days=900)
    with pytest.raises(ValidationError, match="does not unlock"):
        signing_profiles_switch_ca(from_ca=old, to_ca=new, to_ca_password="wrong-password")
    assert SigningProfile.objects.get(pk=profile.pk).ca == old
    switched = signing_profiles_switch_ca(from_ca=old, to_ca=new, to_ca_password="other-password-1")
    assert [p.name for p in switched] == ["default"]
    row = SigningProfile.objects.get(pk=profile.pk)
    assert row.ca == new
    assert row.ca_password == "other-password-1"


def test_an_archived_ca_cannot_be_chosen_for_a_profile(ca) -> None:  # noqa: ANN001
    ca_archive(ca=ca)
    with pytest.raises(ValidationError, match="archived"):
        signing_profile_create(name="p", ca=ca, ca_password=CA_PASSWORD, country="DE")


def test_renew_now_reaches_the_agent_config_and_is_approved_under_a_manual_policy(
    profile,  # noqa: ANN001
) -> None:
    SigningProfile.objects.filter(pk=profile.pk).update(
        renewal_policy=SigningProfile.RenewalPolicy.MANUAL
    )
    station, _ = station_create(name="st-a")
    cert = issue_certificate(station)
    config, etag, _ = station_agent_config_with_etag(station)
    assert config["devices"][0]["renew_after"] == cert.renew_after.isoformat()
    assert certificates_renew_now(ids=[cert.pk], actor_label="CA rotation") == 1
    cert.refresh_from_db()
    config, etag_after, _ = station_agent_config_with_etag(station)
    assert etag_after != etag
    assert config["devices"][0]["renew_after"] == cert.renewal_forced_at.isoformat()
    assert station_agent_config_with_etag(station)[1] == etag_after  # stable between polls
    import time

    from fleet_agent.keys import renewal_proof

    csr = make_ec_csr()
    proof = renewal_proof(
        cert.device_key, station="st-a", device="aws", csr_pem=csr, now=time.time()
    )
    asked, _ = onboarding_request_submit(
        station=station, device_name="aws", csr=csr, renewal=True, proof=proof
    )
    assert asked.status == "approved"
    assert asked.decided_by_label == "CA rotation (renew now)"


def test_the_ca_changelist_counts_active_certificates_in_one_query(admin_client, profile) -> None:  # noqa: ANN001
    stations = [station_create(name=f"st-{i}")[0] for i in range(3)]
    certs = [issue_certificate(s) for s in stations]
    IssuedCertificate.objects.filter(pk=certs[0].pk).update(status="revoked")
    ca_generate(alias="empty", dn="CN=Empty,C=DE", password=CA_PASSWORD)
    counts = dict(cas_with_active_counts().values_list("alias", "active_certificates"))
    assert counts == {"empty": 0, "test-ca": 2}
    url = reverse("admin:signing_certificateauthority_changelist")
    admin_client.get(url)
    with CaptureQueriesContext(connection) as few:
        page = admin_client.get(url)
    for i in range(5):
        ca_generate(alias=f"more-{i}", dn=f"CN=More {i},C=DE", password=CA_PASSWORD)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(url)
    assert len(many) == len(few)  # no query per row
    assert page.status_code == 200
    assert "active certificates" in page.content.decode().lower()


def test_the_ca_page_offers_rotate_and_retire(admin_client, ca) -> None:  # noqa: ANN001
    html = admin_client.get(
        reverse("admin:signing_certificateauthority_change", args=[ca.pk])
    ).content.decode()
    assert reverse("admin:provisioning_carotation_rotate", args=[ca.pk]) in html
    assert reverse("admin:provisioning_carotation_retire", args=[ca.pk]) in html


def test_retirement_is_refused_while_profiles_or_active_certificates_depend_on_it(
    profile,  # noqa: ANN001
) -> None:
    ca = profile.ca
    station, _ = station_create(name="st-a")
    issue_certificate(station)
    with pytest.raises(CaStillInUse, match="Signing profile 'default' still signs with CA"):
        ca_retirement_check(ca=ca, force=True)
    other = ca_generate(alias="other", dn="CN=Other,C=DE", password=CA_PASSWORD, days=900)
    signing_profiles_switch_ca(from_ca=ca, to_ca=other, to_ca_password=CA_PASSWORD)
    with pytest.raises(CaStillInUse, match="still has 1 active certificate; rotate the CA"):
        ca_retirement_check(ca=ca)
    assert ca_retirement_check(ca=ca, force=True) == 1
    ca_archive(ca=ca, forced=True)
    with pytest.raises(CaArchived):
        ca_retirement_check(ca=ca, force=True)
    ca.refresh_from_db()
    assert ca.private_key_pem  # the key stays in the key store
