"""What moto cannot show: AWS errors, throttling, ResourceAlreadyExists and named templates.

``before-send`` hooks answer chosen operations the way AWS does, so botocore parses them and
runs its real retry logic (standard mode, AWS_MAX_ATTEMPTS=3 in these tests); every other
call reaches the moto server.
"""

from __future__ import annotations

import json

import pytest

from portal.models import AuditEvent
from provisioning.models import AwsApiCall, JitpSettings, Job, JobLogLine
from signing.services import ca_generate

from .conftest import (
    CA_PASSWORD,
    SECRET,
    aws,
    aws_response,
    iam_error,
    iot_error,
    jitp_configure,
    jitp_run,
    job_text,
    moto_ca_certificates,
)

pytestmark = pytest.mark.django_db


def throttled(times: int):  # noqa: ANN201
    calls = {"n": 0}

    def handler(request):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] <= times:
            return iot_error(request, "ThrottlingException", "Rate exceeded", status=429)
        return None  # on to the moto server

    return handler


def test_throttling_that_clears_lets_the_job_succeed(
    moto_server,
    access_key,
    jitp_role,  # noqa: ANN001
    aws_hooks,
) -> None:
    aws_hooks.on("iot.RegisterCACertificate", throttled(2))
    jitp_configure(access_key, jitp_role)
    job = jitp_run()
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert len(aws_hooks.sent("iot.RegisterCACertificate")) == 3
    call = AwsApiCall.objects.get(operation="RegisterCACertificate")
    assert call.retry_attempts == 2
    assert call.error_code == ""
    assert len(moto_ca_certificates(moto_server)) == 1


def test_throttling_that_does_not_clear_fails_with_a_sentence(
    moto_server,
    access_key,  # noqa: ANN001
    jitp_role,
    aws_hooks,
) -> None:
    aws_hooks.on("iot.RegisterCACertificate", throttled(100))
    jitp_configure(access_key, jitp_role)
    job = jitp_run()
    assert job.status == Job.Status.FAILED
    assert job.error_code == "ThrottlingException"
    # botocore's retries ran (their count follows AWS_MAX_ATTEMPTS) and the sentence says so.
    attempts = len(aws_hooks.sent("iot.RegisterCACertificate"))
    assert attempts >= 3
    assert job.result == (
        f"AWS kept throttling RegisterCACertificate after {attempts} attempts "
        "(ThrottlingException); wait a few minutes and run the job again."
    )
    assert job.progress_done == 4
    assert job.progress_failed == 1
    row = JitpSettings.objects.get()
    assert row.last_result.startswith("Failed (ThrottlingException)")
    assert row.data_endpoint == ""
    assert moto_ca_certificates(moto_server) == []


def test_access_denied_on_get_role(moto_server, access_key, jitp_role, aws_hooks) -> None:  # noqa: ANN001
    aws_hooks.on(
        "iam.GetRole",
        lambda request: iam_error(
            request,
            "AccessDenied",
            f"User: arn:aws:iam::123456789012:user/portal is not authorized to perform: "
            f"iam:GetRole on resource: {jitp_role}",
        ),
    )
    jitp_configure(access_key, jitp_role)
    job = jitp_run()
    assert job.status == Job.Status.FAILED
    assert job.error_code == "AccessDenied"
    assert job.result == (
        "AWS refused GetRole (AccessDenied): give the access key's IAM user "
        "permission for iam:GetRole."
    )
    assert len(aws_hooks.sent("iam.GetRole")) == 1  # AccessDenied is not retried
    call = AwsApiCall.objects.get(operation="GetRole")
    assert call.error_code == "AccessDenied"
    assert jitp_role not in call.error_message


def test_missing_pass_role_names_iam_pass_role(
    moto_server,
    access_key,
    jitp_role,  # noqa: ANN001
    aws_hooks,
) -> None:
    aws_hooks.on(
        "iot.RegisterCACertificate",
        lambda request: iot_error(
            request,
            "UnauthorizedException",
            f"User is not authorized to perform iam:PassRole on {jitp_role}",
            status=401,
        ),
    )
    jitp_configure(access_key, jitp_role)
    job = jitp_run()
    assert job.error_code == "UnauthorizedException"
    assert "needs iam:PassRole on the JITP role" in job.result


def test_certificate_validation_error(moto_server, access_key, jitp_role, aws_hooks) -> None:  # noqa: ANN001
    aws_hooks.on(
        "iot.RegisterCACertificate",
        lambda request: iot_error(
            request, "CertificateValidationException", "The certificate is not a valid CA."
        ),
    )
    jitp_configure(access_key, jitp_role)
    job = jitp_run()
    assert job.status == Job.Status.FAILED
    assert job.error_code == "CertificateValidationException"
    assert job.result.startswith(
        "AWS rejected the certificate in RegisterCACertificate "
        "(CertificateValidationException: The certificate is not a "
        "valid CA)"
    )
    last = job.log_lines.order_by("-id").first()
    assert last.level == JobLogLine.Level.ERROR
    assert last.message == job.result


def test_network_error(settings, access_key, jitp_role, fast_retries) -> None:  # noqa: ANN001
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{port}"  # nothing listens there
    settings.AWS_MAX_ATTEMPTS = 2
    jitp_configure(access_key, jitp_role)
    job = jitp_run()
    assert job.status == Job.Status.FAILED
    assert job.error_code == "NetworkError"
    assert "could not reach AWS" in job.result


def _pre_register(endpoint: str, certificate_pem: str) -> str:
    return aws("iot", endpoint).register_ca_certificate(
        caCertificate=certificate_pem,
        setAsActive=False,
        registrationConfig={"templateBody": "{}"},
    )["certificateId"]


def _hide_until_registered(aws_hooks) -> None:  # noqa: ANN001
    """Make the id lookups miss (as when AWS's id is not what we derive), until the register
    call has been answered ResourceAlreadyExists."""

    def describe(request):  # noqa: ANN001, ANN202
        if not aws_hooks.sent("iot.RegisterCACertificate"):
            return iot_error(request, "ResourceNotFoundException", "Not found", status=404)
        return None

    aws_hooks.on("iot.DescribeCACertificate", describe)


@pytest.mark.parametrize("with_resource_id", [True, False])
def test_resource_already_exists_updates_the_registered_ca(
    moto_server,
    access_key,
    jitp_role,
    aws_hooks,
    with_resource_id: bool,  # noqa: ANN001
) -> None:
    ca = ca_generate(alias="fleet-ca", dn="CN=Fleet CA,C=DE", password=CA_PASSWORD)
    known_id = _pre_register(moto_server, ca.certificate_pem)
    _hide_until_registered(aws_hooks)
    extra = {"resourceId": known_id, "resourceArn": f"arn:aws:iot:eu-west-1:1:cacert/{known_id}"}
    aws_hooks.on(
        "iot.RegisterCACertificate",
        lambda request: iot_error(
            request,
            "ResourceAlreadyExistsException",
            "The certificate is already registered.",
            status=409,
            **(extra if with_resource_id else {}),
        ),
    )
    aws_hooks.on(
        "iot.ListCACertificates",
        lambda request: aws_response(
            request,
            200,
            {
                "certificates": [
                    {"certificateId": "0" * 64, "status": "ACTIVE"},
                    {"certificateId": known_id, "status": "INACTIVE"},
                ],
            },
        ),
    )
    jitp_configure(access_key, jitp_role, ca_source="existing")
    job = jitp_run()
    assert job.status == Job.Status.SUCCEEDED, job_text(job)
    assert "updating it instead" in job_text(job)
    assert bool(aws_hooks.sent("iot.ListCACertificates")) is not with_resource_id
    cas = moto_ca_certificates(moto_server)
    assert [c["certificate_id"] for c in cas] == [known_id]
    described = aws("iot", moto_server).describe_ca_certificate(certificateId=known_id)
    assert described["certificateDescription"]["status"] == "ACTIVE"
    body = json.loads(described["registrationConfig"]["templateBody"])
    assert body["Resources"]["thing"]["Properties"]["ThingName"] == {
        "Ref": "AWS::IoT::Certificate::CommonName"
    }
    assert JitpSettings.objects.get().aws_ca_certificate_id == known_id


def _json_body(request) -> dict:  # noqa: ANN001
    return json.loads(request.body.decode() if isinstance(request.body, bytes) else request.body)


def test_named_template_is_created_with_type_jitp(
    moto_server,
    access_key,
    jitp_role,  # noqa: ANN001
    aws_hooks,
) -> None:
    aws_hooks.on(
        "iot.CreateProvisioningTemplate",
        lambda request: aws_response(
            request,
            200,
            {
                "templateArn": "arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/fleet-jitp",
                "templateName": "fleet-jitp",
                "defaultVersionId": 1,
            },
        ),
    )
    jitp_configure(access_key, jitp_role, template_name="fleet-jitp")
    job = jitp_run()
    assert job.status == Job.Status.SUCCEEDED, job_text(job)
    sent = _json_body(aws_hooks.sent("iot.CreateProvisioningTemplate")[0])
    assert sent["type"] == "JITP"
    assert sent["enabled"] is True
    assert sent["provisioningRoleArn"] == jitp_role
    body = json.loads(sent["templateBody"])
    assert body["Resources"]["thing"]["Properties"]["ThingName"] == {
        "Ref": "AWS::IoT::Certificate::CommonName"
    }
    cas = moto_ca_certificates(moto_server)
    described = aws("iot", moto_server).describe_ca_certificate(
        certificateId=cas[0]["certificate_id"]
    )
    assert described["registrationConfig"] == {"templateName": "fleet-jitp"}


def test_existing_named_template_gets_a_new_default_version(
    moto_server,
    access_key,  # noqa: ANN001
    jitp_role,
    aws_hooks,
) -> None:
    aws_hooks.on(
        "iot.CreateProvisioningTemplate",
        lambda request: iot_error(
            request,
            "ResourceAlreadyExistsException",
            "Template exists",
            status=409,
        ),
    )
    answers = iter(
        [
            lambda request: iot_error(
                request, "VersionsLimitExceededException", "Too many versions", status=409
            ),
            lambda request: aws_response(
                request,
                200,
                {"versionId": 6, "isDefaultVersion": True, "templateName": "fleet-jitp"},
            ),
        ]
    )
    aws_hooks.on("iot.CreateProvisioningTemplateVersion", lambda request: next(answers)(request))
    aws_hooks.on(
        "iot.ListProvisioningTemplateVersions",
        lambda request: (
            aws_response(
                request,
                200,
                {
                    "versions": [
                        {"versionId": v, "isDefaultVersion": v == 2} for v in (5, 2, 3, 4, 1)
                    ]
                },
            )
            if False
            else aws_response(
                request,
                200,
                {
                    "versions": [
                        {"versionId": v, "isDefaultVersion": v == 1} for v in (5, 2, 3, 4, 1)
                    ]
                },
            )
        ),
    )
    aws_hooks.on(
        "iot.DeleteProvisioningTemplateVersion", lambda request: aws_response(request, 200, {})
    )
    aws_hooks.on("iot.UpdateProvisioningTemplate", lambda request: aws_response(request, 200, {}))
    jitp_configure(access_key, jitp_role, template_name="fleet-jitp")
    job = jitp_run()
    assert job.status == Job.Status.SUCCEEDED, job_text(job)
    deleted = aws_hooks.sent("iot.DeleteProvisioningTemplateVersion")
    assert len(deleted) == 1
    assert deleted[0].url.endswith("/provisioning-templates/fleet-jitp/versions/2")
    created = [_json_body(r) for r in aws_hooks.sent("iot.CreateProvisioningTemplateVersion")]
    assert len(created) == 2
    assert created[-1]["templateBody"] == created[0]["templateBody"]
    update = _json_body(aws_hooks.sent("iot.UpdateProvisioningTemplate")[0])
    assert update == {"enabled": True, "provisioningRoleArn": jitp_role}
    assert "added version 6 as its default" in job_text(job)
    assert len(moto_ca_certificates(moto_server)) == 1


def test_no_secret_reaches_any_log(moto_server, access_key, jitp_role, aws_hooks) -> None:  # noqa: ANN001
    aws_hooks.on("iot.DescribeEndpoint", throttled(100))
    jitp_configure(access_key, jitp_role)
    failed = jitp_run()
    assert failed.status == Job.Status.FAILED
    aws_hooks.handlers.clear()
    succeeded = jitp_run()
    assert succeeded.status == Job.Status.SUCCEEDED, succeeded.result
    recorded = "\n".join(
        [
            *(line.message for line in JobLogLine.objects.all()),
            *(job.result for job in Job.objects.all()),
            *(
                json.dumps(call.parameters) + call.error_message
                for call in AwsApiCall.objects.all()
            ),
            *(json.dumps(event.detail) for event in AuditEvent.objects.all()),
            JitpSettings.objects.get().last_result,
        ]
    )
    assert AwsApiCall.objects.filter(operation="RegisterCACertificate").exists()
    for secret in (CA_PASSWORD, SECRET, jitp_role, "PRIVATE KEY"):
        assert secret not in recorded
