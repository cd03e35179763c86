"""Fleet provisioning by claim, portal side: the CLAIM_SETUP job against moto (+ templates).

moto 5.2 has no provisioning templates, so a tiny in-memory template store answers those
operations through botocore ``before-call`` events on the very client the service uses;
certificates, policies and endpoints are moto's. A Stubber test covers AWS refusing.
"""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from django.core.management import CommandError, call_command
from django.utils import timezone
from moto import mock_aws

import provisioning.claim.services as claim_module
from portal.models import AuditEvent
from provisioning.aws import aws_client, aws_service_get
from provisioning.aws.services import aws_service_update
from provisioning.claim import (
    ClaimSetupNotReady,
    claim_bundle_build,
    claim_setup_run,
    claim_setup_save,
    claim_setup_start,
)
from provisioning.claim.models import ClaimSetup
from provisioning.models import AccessKey, AwsApiCall, Job
from provisioning.tasks import claim_setup_task

pytestmark = pytest.mark.django_db

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
ROLE = "arn:aws:iam::123456789012:role/FleetProvisioning"


class Templates:
    """Provisioning templates, as AWS IoT keeps them (what moto lacks)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def attach(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params.iot.*", self._params)
        for op in (
            "CreateProvisioningTemplate",
            "DescribeProvisioningTemplate",
            "UpdateProvisioningTemplate",
            "CreateProvisioningTemplateVersion",
            "ListProvisioningTemplateVersions",
            "DeleteProvisioningTemplateVersion",
        ):
            client.meta.events.register(f"before-call.iot.{op}", self._answer)
        return client

    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fake_params"] = dict(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        op, p = model.name, context["fake_params"]
        self.calls.append(op)
        name = p.get("templateName")
        t = self.items.get(name)
        if op != "CreateProvisioningTemplate" and t is None:
            return (
                SimpleNamespace(status_code=404, headers={}),
                {"Error": {"Code": "ResourceNotFoundException", "Message": "no template"}},
            )
        if op == "CreateProvisioningTemplate":
            self.items[name] = t = {
                "templateName": name,
                "type": p.get("type"),
                "enabled": p.get("enabled"),
                "provisioningRoleArn": p["provisioningRoleArn"],
                "templateArn": f"arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/{name}",
                "versions": {1: p["templateBody"]},
                "defaultVersionId": 1,
            }
            out = {"templateArn": t["templateArn"], "templateName": name, "defaultVersionId": 1}
        elif op == "DescribeProvisioningTemplate":
            out = {k: v for k, v in t.items() if k != "versions"}
            out["templateBody"] = t["versions"][t["defaultVersionId"]]
        elif op == "UpdateProvisioningTemplate":
            t["enabled"] = p.get("enabled", t["enabled"])
            out = {}
        elif op == "CreateProvisioningTemplateVersion":
            vid = max(t["versions"]) + 1
            t["versions"][vid] = p["templateBody"]
            t["defaultVersionId"] = vid
            out = {"templateArn": t["templateArn"], "versionId": vid, "isDefaultVersion": True}
        elif op == "ListProvisioningTemplateVersions":
            out = {
                "versions": [
                    {"versionId": v, "isDefaultVersion": v == t["defaultVersionId"]}
                    for v in t["versions"]
                ]
            }
        else:
            del t["versions"][p["versionId"]]
            out = {}
        out["ResponseMetadata"] = {"HTTPStatusCode": 200}
        return SimpleNamespace(status_code=200, headers={}), out


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto for IoT + the template store, the AWS service enabled, an access key stored."""
    with mock_aws():
        service = aws_service_get()
        service.enabled = True
        service.save()
        now = timezone.now()
        AccessKey.objects.create(
            access_key_id=KEY_ID, secret="s" * 40, store_for="1d", purge_at=now + timedelta(days=1)
        )
        templates = Templates()
        monkeypatch.setattr(
            claim_module,
            "aws_client",
            lambda *a, **kw: templates.attach(aws_client(*a, **kw)),
        )
        yield SimpleNamespace(templates=templates, iot=boto3.client("iot", region_name="eu-west-1"))


def run(**kw: Any) -> tuple[ClaimSetup, Job]:
    setup = claim_setup_save(
        template_name=kw.pop("template_name", "fleet-claim"),
        region="eu-west-1",
        access_key_id=KEY_ID,
        role_arn=ROLE,
        thing_name_prefix=kw.pop("prefix", "st-"),
        thing_type=kw.pop("thing_type", ""),
    )
    rotate = kw.pop("new_claim_certificate", False)
    job = claim_setup_start(setup=setup, run_async=False, new_claim_certificate=rotate)
    job = claim_setup_run(job_id=job.pk, setup_id=setup.pk, new_claim_certificate=rotate)
    setup.refresh_from_db()
    return setup, job


def test_setup_creates_template_policies_and_claim_certificate(aws: Any) -> None:
    setup, job = run()
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert job.kind == Job.Kind.CLAIM_SETUP
    assert job.progress_done == job.progress_total == 6
    assert setup.status == ClaimSetup.Status.READY
    assert setup.endpoint.endswith("-ats.iot.eu-west-1.amazonaws.com")

    tpl = aws.templates.items["fleet-claim"]
    assert tpl["type"] == "FLEET_PROVISIONING"
    assert tpl["enabled"] is True
    assert tpl["provisioningRoleArn"] == ROLE
    body = json.loads(tpl["versions"][1])
    assert "PreProvisioningHook" not in json.dumps(body)
    assert set(body["Parameters"]) == {"SerialNumber", "AWS::IoT::Certificate::Id"}
    assert body["Resources"]["thing"]["Properties"]["ThingName"] == {
        "Fn::Join": ["", ["st-", {"Ref": "SerialNumber"}]]
    }
    assert body["Resources"]["policy"]["Properties"]["PolicyName"] == "fleet-claim-device"

    cert = aws.iot.describe_certificate(certificateId=setup.claim_certificate_id)
    assert cert["certificateDescription"]["status"] == "ACTIVE"
    attached = aws.iot.list_attached_policies(target=setup.claim_certificate_arn)["policies"]
    assert [p["policyName"] for p in attached] == ["fleet-claim-claim"]
    claim_doc = json.loads(aws.iot.get_policy(policyName="fleet-claim-claim")["policyDocument"])
    resources = {
        r for st in claim_doc["Statement"] if st["Action"] != "iot:Connect" for r in st["Resource"]
    }
    assert {r.split(":", 5)[5] for r in resources} == {
        "topic/$aws/certificates/create-from-csr/*",
        "topic/$aws/provisioning-templates/fleet-claim/provision/*",
        "topicfilter/$aws/certificates/create-from-csr/*",
        "topicfilter/$aws/provisioning-templates/fleet-claim/provision/*",
    }
    device_doc = aws.iot.get_policy(policyName="fleet-claim-device")["policyDocument"]
    assert "client/${iot:Connection.Thing.ThingName}" in device_doc
    assert "topic/things/${iot:Connection.Thing.ThingName}/*" in device_doc
    assert '"*"' not in device_doc

    assert "PRIVATE KEY" in setup.claim_private_key_pem
    everything = json.dumps(list(AwsApiCall.objects.values()), default=str) + " ".join(
        job.log_lines.values_list("message", flat=True)
    )
    assert "PRIVATE KEY" not in everything


def test_rerun_is_idempotent_and_changes_make_versions(aws: Any) -> None:
    first, _ = run()
    again, job = run()
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert again.claim_certificate_id == first.claim_certificate_id
    assert again.template_version_id == 1
    assert "CreateProvisioningTemplateVersion" not in aws.templates.calls
    assert any("up to date" in m for m in job.log_lines.values_list("message", flat=True))

    changed, job = run(prefix="plant7-")
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert changed.template_version_id == 2
    body = json.loads(aws.templates.items["fleet-claim"]["versions"][2])
    assert body["Resources"]["thing"]["Properties"]["ThingName"]["Fn::Join"][1][0] == "plant7-"


def test_new_claim_certificate_deactivates_the_old_one(aws: Any) -> None:
    first, _ = run()
    rotated, job = run(new_claim_certificate=True)
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert rotated.claim_certificate_id != first.claim_certificate_id
    old = aws.iot.describe_certificate(certificateId=first.claim_certificate_id)
    assert old["certificateDescription"]["status"] == "INACTIVE"


def test_existing_jitp_template_of_that_name_fails_the_job(aws: Any) -> None:
    aws.templates.items["fleet-claim"] = {
        "templateName": "fleet-claim",
        "type": "JITP",
        "enabled": True,
        "templateArn": "arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/fleet-claim",
        "versions": {1: "{}"},
        "defaultVersionId": 1,
    }
    setup, job = run()
    assert job.status == Job.Status.FAILED
    assert "JITP template named fleet-claim already exists" in job.result
    assert setup.status == ClaimSetup.Status.FAILED
    with pytest.raises(ClaimSetupNotReady, match="not ready"):
        claim_bundle_build(setup=setup)


def test_aws_refusal_is_a_failed_job_with_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    service = aws_service_get()
    service.enabled = True
    service.save()
    AccessKey.objects.create(
        access_key_id=KEY_ID,
        secret="s" * 40,
        store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )
    stubs: list[Stubber] = []

    def stubbed(*a: Any, **kw: Any) -> Any:
        client = aws_client(*a, **kw)
        stub = Stubber(client)
        stub.add_response(
            "describe_endpoint", {"endpointAddress": "x-ats.iot.eu-west-1.amazonaws.com"}
        )
        stub.add_client_error(
            "create_keys_and_certificate",
            service_error_code="AccessDeniedException",
            service_message="User is not authorized",
            http_status_code=403,
        )
        stub.activate()
        stubs.append(stub)
        return client

    monkeypatch.setattr(claim_module, "aws_client", stubbed)
    setup, job = run()
    assert job.status == Job.Status.FAILED
    assert job.error_code == "AccessDeniedException"
    assert "CreateKeysAndCertificate failed" in job.result
    stubs[0].assert_no_pending_responses()
    assert AwsApiCall.objects.filter(error_code="AccessDeniedException").exists()


def test_disabled_aws_service_fails_cleanly() -> None:
    aws_service_update(enabled=False)
    AccessKey.objects.create(
        access_key_id=KEY_ID,
        secret="s" * 40,
        store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )
    setup, job = run()
    assert job.status == Job.Status.FAILED
    assert "disabled" in job.result


def test_task_runs_the_job(aws: Any) -> None:
    setup = claim_setup_save(
        template_name="via-task", region="eu-west-1", access_key_id=KEY_ID, role_arn=ROLE
    )
    job = claim_setup_start(setup=setup, run_async=False)
    claim_setup_task.apply(args=(job.pk, setup.pk, False))
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.result


def test_start_queues_the_task_on_commit(
    aws: Any, django_capture_on_commit_callbacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple] = []
    monkeypatch.setattr(claim_setup_task, "apply_async", lambda args, **_: sent.append(args))
    setup = claim_setup_save(
        template_name="queued", region="eu-west-1", access_key_id=KEY_ID, role_arn=ROLE
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = claim_setup_start(setup=setup)
    assert sent == [(job.pk, setup.pk, False)]
    assert ClaimSetup.objects.get(pk=setup.pk).job_id == job.pk


def test_bad_parameters_are_refused() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="no access key"):
        claim_setup_save(template_name="x", region="eu-west-1", access_key_id=KEY_ID, role_arn=ROLE)
    AccessKey.objects.create(
        access_key_id=KEY_ID,
        secret="s" * 40,
        store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )
    for kwargs, words in (
        ({"template_name": "bad name!"}, "template name"),
        ({"role_arn": "role"}, "role ARN"),
        ({"region": "mars-1"}, "not a valid choice"),
    ):
        args = {
            "template_name": "ok",
            "region": "eu-west-1",
            "access_key_id": KEY_ID,
            "role_arn": ROLE,
            **kwargs,
        }
        with pytest.raises(ValidationError, match=words):
            claim_setup_save(**args)


def test_commands_and_audited_bundle(aws: Any, tmp_path: Any, capsys) -> None:
    call_command(
        "setup_claim",
        "--template-name",
        "cmd-claim",
        "--access-key-id",
        KEY_ID,
        "--role-arn",
        ROLE,
        "--region",
        "eu-west-1",
        "--thing-name-prefix",
        "st-",
    )
    out = capsys.readouterr().out.strip().splitlines()
    setup = ClaimSetup.objects.get(template_name="cmd-claim")
    assert out[-1] == setup.endpoint
    assert "PRIVATE KEY" not in "\n".join(out)

    with pytest.raises(CommandError, match="no access key"):
        call_command(
            "setup_claim",
            "--template-name",
            "y",
            "--access-key-id",
            "AKIAAAAAAAAAAAAAAAAA",
            "--role-arn",
            ROLE,
        )

    target = tmp_path / "bundle.zip"
    call_command("claim_bundle", "--template-name", "cmd-claim", "--out", str(target))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as zf:
        assert sorted(zf.namelist()) == ["claim.cert.pem", "claim.json", "claim.private.key"]
        meta = json.loads(zf.read("claim.json"))
        assert meta["template_name"] == "cmd-claim"
        assert meta["endpoint"] == setup.endpoint
        assert b"PRIVATE KEY" in zf.read("claim.private.key")
        assert zf.read("claim.cert.pem").decode() == setup.claim_certificate_pem
    assert AuditEvent.objects.filter(action="claim_bundle_download").count() == 1
    setup.refresh_from_db()
    assert setup.download_count == 1
    with pytest.raises(CommandError, match="Cannot create"):
        call_command("claim_bundle", "--template-name", "cmd-claim", "--out", str(target))
    with pytest.raises(CommandError, match="no claim setup"):
        call_command("claim_bundle", "--template-name", "nope", "--out", str(tmp_path / "n"))


def test_admin_download_is_a_permissioned_audited_action(
    aws: Any, client, superuser, staff_user
) -> None:
    setup, job = run()
    assert job.status == Job.Status.SUCCEEDED
    url = "/admin/provisioning/claimsetup/"
    post = {"action": "download_bundle", "_selected_action": [setup.pk]}
    client.force_login(superuser)
    page = client.get(f"{url}{setup.pk}/change/").content.decode()
    assert "PRIVATE KEY" not in page
    r = client.post(url, post)
    assert r.status_code == 200
    assert r["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert b"PRIVATE KEY" in zf.read("claim.private.key")
    event = AuditEvent.objects.get(action="claim_bundle_download")
    assert event.actor == superuser

    from django.contrib.auth.models import Permission

    staff_user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_claimsetup", "change_claimsetup"])
    )
    client.force_login(staff_user)
    r = client.post(url, post)
    assert r.get("Content-Type") != "application/zip"
    assert AuditEvent.objects.filter(action="claim_bundle_download").count() == 1
