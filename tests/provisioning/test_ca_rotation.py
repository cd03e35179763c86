"""CA rotation against a moto server: the new CA registered beside the old one, profiles
switched, the paced wave, the failure threshold's pause and resume, the retirement (refused,
forced, automatic at the end) as AWS sees it, and the commands' refusals."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from devices.services import station_create
from portal.models import AuditEvent
from provisioning.fleet.agent_config import station_agent_config_with_etag
from provisioning.lifecycle import aws_actions_run
from provisioning.lifecycle.models import AwsAction
from provisioning.models import (
    AwsApiCall,
    CaRetirement,
    CaRotation,
    CaRotationItem,
    JitpSettings,
    Job,
)
from provisioning.rotation.retire import ca_retire_run, ca_retire_start
from provisioning.rotation.services import NewCa, ca_rotation_register, ca_rotation_start
from provisioning.rotation.wave import ca_rotation_advance, ca_rotation_resume
from signing.errors import CaStillInUse
from signing.models import CertificateAuthority, IssuedCertificate, SigningProfile
from signing.services import (
    ca_generate,
    certificate_supersede,
    onboarding_request_fetched,
    onboarding_request_submit,
    onboarding_requests_sign,
    signing_profile_create,
)
from tests.signing.conftest import issue_certificate, make_ec_csr

from .conftest import CA_PASSWORD, aws, jitp_configure, jitp_run, job_text, moto_ca_certificates

NEW_PASSWORD = "new-ca-password-456"
pytestmark = pytest.mark.django_db


def _aws_ca_status(endpoint: str) -> dict[str, str]:
    """AWS's view: {CA alias: status} of every CA the moto server holds."""
    iot = aws("iot", endpoint)
    pems = {ca.certificate_pem.strip(): ca.alias for ca in CertificateAuthority.objects.all()}
    out = {}
    for item in moto_ca_certificates(endpoint):
        described = iot.describe_ca_certificate(certificateId=item["certificate_id"])
        pem = described["certificateDescription"]["certificatePem"].strip()
        out[pems[pem]] = described["certificateDescription"]["status"]
    return out


KEYS: dict[int, object] = {}


def _renew(station, device: str) -> IssuedCertificate:  # noqa: ANN001
    """What the agent does once its configuration says renew now (with the key's proof)."""
    import time

    from fleet_agent.keys import renewal_proof

    csr = make_ec_csr()
    current = IssuedCertificate.objects.get(device__station=station, status="active")
    proof = renewal_proof(
        KEYS[current.pk], station=station.name, device=device, csr_pem=csr, now=time.time()
    )
    request, _ = onboarding_request_submit(
        station=station, device_name=device, csr=csr, renewal=True, proof=proof
    )
    assert request.status == "approved", request.reason
    onboarding_requests_sign(ids=[request.pk])
    request.refresh_from_db()
    cert = onboarding_request_fetched(request=request)
    assert cert is not None
    # The renewal proves itself on its first connection; the life cycle supersedes the old.
    certificate_supersede(certificate=current, successor=cert)
    return cert


@pytest.fixture
def fleet(moto_server, access_key, jitp_role):  # noqa: ANN001, ANN201
    """JITP set up on CA 'fleet-ca', a manual-renewal profile on it, three stations with a
    certificate each."""
    jitp_configure(access_key, jitp_role)
    assert jitp_run().status == Job.Status.SUCCEEDED
    ca1 = CertificateAuthority.objects.get(alias="fleet-ca")
    signing_profile_create(
        name="fleet",
        ca=ca1,
        ca_password=CA_PASSWORD,
        country="DE",
        is_default=True,
        renewal_policy=SigningProfile.RenewalPolicy.MANUAL,
    )
    stations = [station_create(name=f"st-{i}")[0] for i in range(3)]
    certs = [issue_certificate(s, "aws") for s in stations]
    KEYS.update((c.pk, c.device_key) for c in certs)
    return ca1, stations, certs


def _start(ca1: CertificateAuthority, **kw: object) -> CaRotation:
    rotation = ca_rotation_start(
        from_ca=ca1,
        new_ca=NewCa(alias="fleet-ca-2", dn="CN=Fleet CA 2,O=ACME,C=DE", days=1000),
        to_ca_password=NEW_PASSWORD,
        hand_off=False,
        **kw,  # type: ignore[arg-type]
    )
    return ca_rotation_register(rotation=rotation)


def test_the_new_ca_is_registered_beside_the_old_one_and_profiles_switch(
    fleet,
    moto_server: str,  # noqa: ANN001
) -> None:
    ca1, stations, _ = fleet
    rotation = _start(ca1)
    assert rotation.status == CaRotation.Status.RUNNING, rotation.job.result
    assert rotation.phase == CaRotation.Phase.WAVE
    assert _aws_ca_status(moto_server) == {"fleet-ca": "ACTIVE", "fleet-ca-2": "ACTIVE"}
    ca2 = CertificateAuthority.objects.get(alias="fleet-ca-2")
    described = aws("iot", moto_server).describe_ca_certificate(
        certificateId=rotation.aws_ca_certificate_id
    )
    assert described["registrationConfig"]["templateBody"]  # the same inline JITP template
    profile = SigningProfile.objects.get(name="fleet")
    assert profile.ca == ca2
    assert profile.ca_password == NEW_PASSWORD
    settings_row = JitpSettings.objects.get()
    assert (settings_row.ca_alias, settings_row.registered_ca_alias) == ("fleet-ca-2", "fleet-ca-2")
    assert rotation.ca_password == ""  # the profiles hold it now
    assert rotation.total == 3
    text = job_text(rotation.job)
    assert NEW_PASSWORD not in text
    assert CA_PASSWORD not in text
    assert not AuditEvent.objects.filter(detail__icontains=NEW_PASSWORD).exists()
    # Every new certificate comes from the new CA.
    fresh = issue_certificate(station_create(name="st-new")[0], "aws")
    assert fresh.ca == ca2


def test_the_wave_is_paced_and_renew_now_reaches_the_agent_config(fleet) -> None:  # noqa: ANN001
    ca1, stations, certs = fleet
    rotation = _start(ca1, rate_per_minute=2)
    t0 = rotation.wave_started_at
    _, etag_before, _ = station_agent_config_with_etag(stations[0])
    ca_rotation_advance(rotation=rotation, now=t0)
    assert CaRotationItem.objects.count() == 1  # the first one at once
    ca_rotation_advance(rotation=rotation, now=t0 + timedelta(seconds=20))
    assert CaRotationItem.objects.count() == 1  # 2 per minute: not yet
    ca_rotation_advance(rotation=rotation, now=t0 + timedelta(seconds=30))
    assert CaRotationItem.objects.count() == 2
    first = IssuedCertificate.objects.get(pk=certs[0].pk)
    assert first.renewal_forced_at is not None
    config, etag_after, _ = station_agent_config_with_etag(stations[0])
    assert etag_after != etag_before
    assert config["devices"][0]["renew_after"] == first.renewal_forced_at.isoformat()
    # The renewal is approved although the profile's policy is manual, and signed by CA 2.
    renewed = _renew(stations[0], "aws")
    assert renewed.ca.alias == "fleet-ca-2"
    ca_rotation_advance(rotation=rotation, now=t0 + timedelta(seconds=31))
    assert CaRotationItem.objects.get(certificate=certs[0]).state == "renewed"
    rotation.job.refresh_from_db()
    assert (rotation.job.progress_done, rotation.job.progress_total) == (1, 3)


def test_failures_reaching_the_threshold_pause_the_wave_and_resume_asks_again(fleet) -> None:  # noqa: ANN001
    ca1, stations, certs = fleet
    rotation = _start(ca1, rate_per_minute=100, failure_threshold=2, renew_timeout_minutes=1)
    t0 = rotation.wave_started_at
    ca_rotation_advance(rotation=rotation, now=t0 + timedelta(seconds=2))
    assert CaRotationItem.objects.count() == 3
    _renew(stations[0], "aws")
    ca_rotation_advance(rotation=rotation, now=t0 + timedelta(minutes=2))
    rotation.refresh_from_db()
    assert rotation.status == CaRotation.Status.PAUSED
    assert CaRotationItem.objects.filter(state="failed").count() == 2
    assert "not renewed within 1 minutes" in job_text(rotation.job)
    assert "Paused: 2 devices failed" in job_text(rotation.job)
    # Paused: nothing more happens on a step.
    ca_rotation_advance(rotation=rotation, now=t0 + timedelta(minutes=3))
    assert CaRotation.objects.get().status == CaRotation.Status.PAUSED
    rotation = ca_rotation_resume(rotation=rotation)
    assert rotation.status == CaRotation.Status.RUNNING
    assert CaRotationItem.objects.filter(state="asked").count() == 2


def test_the_wave_retires_the_old_ca_when_none_is_left(fleet, moto_server: str) -> None:  # noqa: ANN001
    ca1, stations, _ = fleet
    rotation = _start(ca1, rate_per_minute=100)
    ca_rotation_advance(rotation=rotation, now=rotation.wave_started_at + timedelta(seconds=2))
    for station in stations:
        _renew(station, "aws")
    ca_rotation_advance(rotation=rotation)
    rotation.refresh_from_db()
    assert rotation.phase == CaRotation.Phase.RETIRE
    retirement = CaRetirement.objects.get(rotation=rotation)
    assert not retirement.forced
    ca_retire_run(job=retirement.job)
    aws_actions_run()  # the outbox sets the old CA INACTIVE
    assert AwsAction.objects.get(kind=AwsAction.Kind.DEACTIVATE_CA).status == "done"
    ca_rotation_advance(rotation=rotation)
    rotation.refresh_from_db()
    assert rotation.status == CaRotation.Status.DONE, rotation.result
    assert rotation.job.status == Job.Status.SUCCEEDED
    assert _aws_ca_status(moto_server) == {"fleet-ca": "INACTIVE", "fleet-ca-2": "ACTIVE"}
    ca1.refresh_from_db()
    assert ca1.is_archived
    assert ca1.private_key_pem  # archived, never deleted
    assert not IssuedCertificate.objects.filter(ca=ca1, status="active").exists()


def test_retire_is_refused_while_certificates_are_active_and_force_breaks_them(
    fleet,
    moto_server: str,  # noqa: ANN001
) -> None:
    ca1, _, _ = fleet
    with pytest.raises(CaStillInUse, match="Signing profile 'fleet' still signs"):
        ca_retire_start(ca=ca1, hand_off=False)
    other = ca_generate(alias="spare", dn="CN=Spare,C=DE", password=CA_PASSWORD)
    SigningProfile.objects.filter(ca=ca1).update(ca=other)
    with pytest.raises(CaStillInUse, match="still has 3 active certificates"):
        ca_retire_start(ca=ca1, hand_off=False)
    assert _aws_ca_status(moto_server) == {"fleet-ca": "ACTIVE"}
    job = ca_retire_start(ca=ca1, force=True, hand_off=False)
    job = ca_retire_run(job=job)
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert "Forced: 3 active certificates" in job_text(job)
    ca1.refresh_from_db()
    assert ca1.is_archived
    # The AWS change is a row of the outbox; AWS has it once the runner carried it out.
    action = AwsAction.objects.get(kind=AwsAction.Kind.DEACTIVATE_CA)
    assert action.aws_certificate_id == CaRetirement.objects.get(ca=ca1).aws_ca_certificate_id
    assert action.requested_by == "CA retirement"
    assert _aws_ca_status(moto_server) == {"fleet-ca": "ACTIVE"}
    assert aws_actions_run().done == 1
    assert _aws_ca_status(moto_server) == {"fleet-ca": "INACTIVE"}
    update = AwsApiCall.objects.get(action=action, operation="UpdateCACertificate")
    assert update.parameters["newAutoRegistrationStatus"] == "DISABLE"


def test_a_retirement_run_twice_records_one_aws_action_and_aws_changes_once(
    fleet,
    moto_server: str,  # noqa: ANN001
) -> None:
    ca1, _, _ = fleet
    other = ca_generate(alias="spare", dn="CN=Spare,C=DE", password=CA_PASSWORD)
    SigningProfile.objects.filter(ca=ca1).update(ca=other)
    job = ca_retire_start(ca=ca1, force=True, hand_off=False)
    ca_retire_run(job=job)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)  # a redelivered task
    ca_retire_run(job=Job.objects.get(pk=job.pk))
    assert AwsAction.objects.filter(kind=AwsAction.Kind.DEACTIVATE_CA).count() == 1
    assert aws_actions_run().done == 1
    action = AwsAction.objects.get(kind=AwsAction.Kind.DEACTIVATE_CA)
    action_again = AwsAction.objects.create(
        kind=AwsAction.Kind.DEACTIVATE_CA, aws_certificate_id=action.aws_certificate_id
    )
    assert aws_actions_run().done == 1  # already INACTIVE: done without an update
    calls = AwsApiCall.objects.filter(action_id=action_again.pk).values_list("operation", flat=True)
    assert list(calls) == ["DescribeCACertificate"]
    assert _aws_ca_status(moto_server) == {"fleet-ca": "INACTIVE"}


def test_rotate_ca_command_refusals_are_one_sentence(fleet, monkeypatch) -> None:  # noqa: ANN001
    ca1, _, _ = fleet
    monkeypatch.delenv("CA_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="CA_PASSWORD"):
        call_command("rotate_ca", "--from", "fleet-ca", "--generate-ca", "CN=X,C=DE")
    monkeypatch.setenv("CA_PASSWORD", NEW_PASSWORD)
    with pytest.raises(CommandError, match="There is no CA 'nope'"):
        call_command("rotate_ca", "--from", "nope", "--generate-ca", "CN=X,C=DE")
    with pytest.raises(CommandError, match="not to itself"):
        call_command("rotate_ca", "--from", "fleet-ca", "--to", "fleet-ca")
    with pytest.raises(CommandError, match="rotate to a CA that outlives it"):
        call_command(
            "rotate_ca", "--from", "fleet-ca", "--generate-ca", "CN=Short,C=DE", "--days", "10"
        )
    assert not CertificateAuthority.objects.filter(subject__contains="Short").exists()
    with pytest.raises(CommandError, match="still sign"):
        call_command("retire_ca", "fleet-ca")
    assert CaRotation.objects.count() == 0


def test_rotate_ca_command_with_wait_reports_a_paused_wave(fleet, monkeypatch) -> None:  # noqa: ANN001
    ca1, _, certs = fleet
    monkeypatch.setenv("CA_PASSWORD", NEW_PASSWORD)
    monkeypatch.setattr("provisioning.management.commands.rotate_ca.POLL_SECONDS", 0.01)
    # Nobody renews: every device fails at once when the timeout is already over.
    IssuedCertificate.objects.filter(pk__in=[c.pk for c in certs]).update(created_at=timezone.now())
    monkeypatch.setattr(
        "provisioning.rotation.wave.timedelta", lambda minutes: timedelta(minutes=-minutes)
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match="The rotation paused: 3 devices failed to renew"):
        call_command(
            "rotate_ca",
            "--from",
            "fleet-ca",
            "--generate-ca",
            "CN=Fleet CA 2,O=ACME,C=DE",
            "--alias",
            "fleet-ca-2",
            "--days",
            "1000",
            "--rate",
            "600",
            "--failure-threshold",
            "3",
            "--wait",
            "30",
            stdout=out,
        )
    assert "Registration of the new CA beside the old one" in out.getvalue()
    assert NEW_PASSWORD not in out.getvalue()


def test_the_admin_rotate_page_refuses_without_jitp_and_retire_confirms_the_count(
    admin_client,  # noqa: ANN001
) -> None:
    from django.urls import reverse

    ca1 = ca_generate(alias="solo", dn="CN=Solo,C=DE", password=CA_PASSWORD)
    url = reverse("admin:provisioning_carotation_rotate", args=[ca1.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "Start the rotation" in page.content.decode()
    refused = admin_client.post(
        url,
        {
            "dn": "CN=Solo 2,C=DE",
            "new_alias": "solo-2",
            "key_type": "ec-p256",
            "days": "900",
            "password": NEW_PASSWORD,
            "rate_per_minute": "60",
            "failure_threshold": "5",
            "renew_timeout_minutes": "15",
        },
    )
    html = refused.content.decode()
    assert "JITP has not been set up yet" in html
    assert NEW_PASSWORD not in html
    assert not CertificateAuthority.objects.filter(alias="solo-2").exists()  # rolled back
    retire = reverse("admin:provisioning_carotation_retire", args=[ca1.pk])
    assert "Retire the CA" in admin_client.get(retire).content.decode()


def test_the_retire_page_states_how_many_certificates_would_break(fleet, admin_client) -> None:  # noqa: ANN001
    from django.urls import reverse

    ca1, _, _ = fleet
    html = admin_client.get(
        reverse("admin:provisioning_carotation_retire", args=[ca1.pk])
    ).content.decode()
    assert "<strong>3</strong> active certificates still" in html
    assert "break 3 certificates" in html
    answer = admin_client.post(
        reverse("admin:provisioning_carotation_retire", args=[ca1.pk]), {"force": "yes"}
    )
    assert answer.status_code == 200  # refused: a profile still signs with it
    assert "still signs with CA" in answer.content.decode()
