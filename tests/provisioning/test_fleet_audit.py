"""The fleet audit against moto: a certificate registered directly in AWS under our CA and
attached to one of our things is reported (unknown certificate, thing with two ACTIVE
certificates); ``fleet_audit --fix`` resolves both through the outbox; the next audit is
clean. And the checks of the portal's own state, the selector, the estimate."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from provisioning.audit.models import AuditFinding, FleetAudit
from provisioning.audit.selectors import open_findings_by_severity
from provisioning.audit.services import audit_estimate, fleet_audit_run
from provisioning.audit.snapshot import policy_too_broad
from provisioning.lifecycle import AwsAction
from signing.models import IssuedCertificate
from tests.provisioning.lifecycle_fixtures import (  # noqa: F401
    Fleet,
    fleet,
    rogue_certificate,
    run_outbox,
    stand_in_iot,
)
from tests.provisioning.test_lifecycle_outbox import der_certificate_ids  # noqa: F401


def _audit(*args: str) -> tuple[int, dict, str]:
    out, err = StringIO(), StringIO()
    code = 0
    try:
        call_command("fleet_audit", "--json", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, json.loads(out.getvalue()), err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_certificate_registered_behind_our_back_is_found_and_fixed(fleet: Fleet) -> None:  # noqa: F811
    cert = fleet.onboard("dev-1")
    fleet.jitp(cert)
    IssuedCertificate.objects.filter(pk=cert.pk).update(first_connected_at=timezone.now())
    rogue_pem = rogue_certificate(fleet, cert.common_name)
    rogue = fleet.iot.register_certificate(
        certificatePem=rogue_pem, caCertificatePem=fleet.ca.certificate_pem, status="ACTIVE"
    )
    fleet.iot.attach_thing_principal(thingName=cert.common_name, principal=rogue["certificateArn"])
    fleet.iot.attach_policy(policyName=fleet.policy_name, target=rogue["certificateArn"])

    code, report, err = _audit()
    assert code == 1
    found = {(f["check"], f["severity"], f["fixable"]) for f in report["findings"]}
    assert found == {
        ("unknown_certificate", "error", True),
        ("thing_multiple_active", "error", True),
    }
    assert all(
        set(f) == {"check", "severity", "subject", "detail", "fixable"} for f in report["findings"]
    )
    subjects = {f["check"]: f["subject"] for f in report["findings"]}
    assert subjects["thing_multiple_active"] == f"thing {cert.common_name}"
    assert subjects["unknown_certificate"].startswith(f"certificate {rogue['certificateId'][:12]}")
    assert "AWS calls" in err
    assert open_findings_by_severity() == {"info": 0, "warning": 0, "error": 2}

    code, _, _ = _audit("--fix")
    assert code == 0  # every warning or error has its fix recorded
    assert AwsAction.objects.filter(aws_certificate_id=rogue["certificateId"]).exists()
    assert not AwsAction.objects.filter(aws_certificate_id=cert.aws_certificate_id).exists()
    run_outbox()
    desc = fleet.iot.describe_certificate(certificateId=rogue["certificateId"])
    assert desc["certificateDescription"]["status"] == "INACTIVE"
    assert fleet.iot.list_principal_things(principal=rogue["certificateArn"])["things"] == []
    assert fleet.status(cert) == "ACTIVE"  # the device's own certificate is untouched
    assert fleet.things_of(cert) == [cert.common_name]

    code, report, _ = _audit()
    assert code == 0
    assert [(f["check"], f["severity"]) for f in report["findings"]] == [
        ("unknown_certificate", "info")
    ]
    assert open_findings_by_severity()["error"] == 0


@pytest.mark.django_db(transaction=True)
def test_the_portal_side_checks(fleet: Fleet) -> None:  # noqa: F811
    revoked = fleet.onboard("dev-r")
    fleet.jitp(revoked)
    IssuedCertificate.objects.filter(pk=revoked.pk).update(status="revoked")
    late = fleet.onboard("dev-late")
    fleet.jitp(late)
    IssuedCertificate.objects.filter(pk=late.pk).update(
        renew_after=timezone.now() - timedelta(days=1), first_connected_at=timezone.now()
    )
    pending = fleet.onboard("dev-p")
    fleet.jitp(pending, status="PENDING_ACTIVATION")
    run = fleet_audit_run(actor_label="test")
    assert run.status == FleetAudit.Status.DONE
    checks = {(f.check_name, f.subject.split(" (")[0]) for f in run.findings.all()}
    assert ("revoked_but_active", f"certificate {revoked.aws_certificate_id[:12]}…") in checks
    assert ("renewal_overdue", "device st-fleet/dev-late") in checks
    assert ("pending_activation", f"certificate {pending.aws_certificate_id[:12]}…") in checks
    fix = AuditFinding.objects.get(run=run, check_name="revoked_but_active")
    assert [step["kind"] for step in fix.fix] == ["revoke", "detach_policies"]
    # The twins were refreshed from what the audit saw.
    pending.refresh_from_db()
    assert pending.aws_status == "PENDING_ACTIVATION"
    assert run.calls == run.counts["certificates"] * 2 + 1 + 1 + 1 + run.counts["policies"]


def test_policy_too_broad() -> None:
    star = {"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "arn:x"}]}
    anywhere = {"Statement": [{"Effect": "Allow", "Action": ["iot:Connect"], "Resource": "*"}]}
    narrow = {"Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:x"}]}
    deny = {"Statement": [{"Effect": "Deny", "Action": "iot:*", "Resource": "*"}]}
    assert "iot:*" in policy_too_broad(star)
    assert "every resource" in policy_too_broad(anywhere)
    assert policy_too_broad(narrow) == policy_too_broad(deny) == ""


def test_the_estimate_is_two_calls_per_device_plus_the_listings() -> None:
    est = audit_estimate(devices=10000, rate=10)
    assert est.calls == 1 + 40 + 20000 + 40 + 1
    assert est.seconds == pytest.approx(est.calls / 10)
