"""Retirement after a proven renewal, against moto: the old certificate stays ACTIVE until
the agent reported a connection with the new one and AWS shows it ACTIVE on the thing; then
it is INACTIVE, detached and, after the grace period, deleted. The confirm after a first
connection runs once and explains a certificate stuck in PENDING_ACTIVATION."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from provisioning.fleet.agent_reports import station_report_state
from provisioning.jitp import jitp_settings_get
from provisioning.lifecycle import AwsAction
from signing.models import IssuedCertificate
from tests.provisioning.lifecycle_fixtures import Fleet, fleet, run_outbox, stand_in_iot  # noqa: F401
from tests.provisioning.test_lifecycle_outbox import der_certificate_ids  # noqa: F401

Kind = AwsAction.Kind


def _report(fleet: Fleet, cert: IssuedCertificate, *, connected: bool = True) -> None:  # noqa: F811
    serial = format(int(cert.serial.replace(":", ""), 16), "x")  # as the agent reports it
    station_report_state(
        station=fleet.station,
        report={
            "agent_version": "test",
            "devices": [
                {
                    "name": cert.device.name,
                    "status": "connected" if connected else "certificate_issued",
                    "connected": connected,
                    "certificate_serial": serial,
                }
            ],
        },
    )


def _kinds(cert: IssuedCertificate) -> list[str]:
    return sorted(AwsAction.objects.filter(certificate=cert).values_list("kind", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_proven_renewal_retires_the_old_certificate(fleet: Fleet, settings) -> None:  # noqa: ANN001, F811
    settings.AWS_RETIRED_CERTIFICATE_GRACE_SECONDS = 3600
    old = fleet.onboard("dev-1")
    fleet.jitp(old)
    _report(fleet, old)
    run_outbox()
    old.refresh_from_db()
    assert (old.aws_status, old.aws_thing, old.aws_note) == ("ACTIVE", old.common_name, "")
    assert old.aws_policies == [fleet.policy_name]
    assert old.first_connected_at is not None

    new = fleet.renew(old)
    # Issued and fetched, not yet proven: the old certificate stays ACTIVE and working.
    _report(fleet, old)
    run_outbox()
    old.refresh_from_db()
    assert old.status == "active"
    assert fleet.status(old) == "ACTIVE"
    assert _kinds(old) == [Kind.CONFIRM]

    # The agent connects with the new certificate (JITP registers it), reports it twice.
    fleet.jitp(new)
    _report(fleet, new)
    _report(fleet, new)
    assert AwsAction.objects.filter(certificate=new, kind=Kind.CONFIRM).count() == 1
    run_outbox()
    old.refresh_from_db()
    new.refresh_from_db()
    assert new.aws_status == "ACTIVE"
    assert old.status == "superseded"
    assert old.superseded_at is not None
    assert fleet.status(new) == "ACTIVE"
    assert fleet.status(old) == "INACTIVE"
    assert fleet.things_of(old) == []
    assert fleet.policies_of(old) == []
    assert fleet.things_of(new) == [new.common_name]
    delete = AwsAction.objects.get(certificate=old, kind=Kind.DELETE)
    assert delete.status == AwsAction.Status.PENDING
    assert delete.not_before > timezone.now() + timedelta(minutes=59)

    # After the grace period the old certificate is deleted; the new one is untouched.
    AwsAction.objects.filter(pk=delete.pk).update(not_before=timezone.now())
    run_outbox()
    assert fleet.status(old) == "DELETED"
    assert fleet.status(new) == "ACTIVE"
    assert _kinds(new) == [Kind.CONFIRM]


@pytest.mark.django_db(transaction=True)
def test_a_renewal_that_never_connects_leaves_the_old_one_working(fleet: Fleet) -> None:  # noqa: F811
    old = fleet.onboard("dev-2")
    fleet.jitp(old)
    _report(fleet, old)
    new = fleet.renew(old)
    fleet.jitp(new)  # in AWS, but the agent never reported a connection with it
    _report(fleet, new, connected=False)
    run_outbox()
    old.refresh_from_db()
    assert old.status == "active"
    assert fleet.status(old) == "ACTIVE"
    assert not AwsAction.objects.filter(certificate=new).exists()


@pytest.mark.django_db(transaction=True)
def test_a_certificate_stuck_in_pending_activation_names_the_missing_parameter(
    fleet: Fleet,  # noqa: F811
    settings,  # noqa: ANN001
) -> None:
    settings.AWS_CONFIRM_ATTEMPTS = 3
    row = jitp_settings_get()
    row.attributes = {"unit": "AWS::IoT::Certificate::OrganizationalUnit"}
    row.save()
    cert = fleet.onboard("dev-3")
    fleet.jitp(cert, status="PENDING_ACTIVATION")
    _report(fleet, cert)
    run_outbox()
    action = AwsAction.objects.get(certificate=cert, kind=Kind.CONFIRM)
    assert action.status == AwsAction.Status.DONE
    assert action.attempts == 3  # looked again while JITP may still have been at work
    cert.refresh_from_db()
    assert cert.aws_status == "PENDING_ACTIVATION"
    assert cert.aws_note == (
        "Stuck in PENDING_ACTIVATION: the JITP template needs OrganizationalUnit, which the "
        "subject lacks."
    )
    # Settled: later reports do not enqueue it again.
    _report(fleet, cert)
    assert AwsAction.objects.filter(certificate=cert, kind=Kind.CONFIRM).count() == 1
