"""The JITP setup job against a moto server: the command's happy path, re-runs, options and
the failures moto can produce itself (missing role, pre-flight mismatch, wrong password)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from provisioning.jitp import (
    SEVEN_ACTIONS,
    THING_NAME_VARIABLE,
    policy_document_build,
    template_body_build,
    template_certificate_parameters,
)
from provisioning.models import AwsApiCall, JitpSettings, Job
from signing.models import CertificateAuthority, SigningProfile
from signing.services import ca_generate
from tests.conftest import ROOT, subprocess_env

from .conftest import (
    CA_PASSWORD,
    SECRET,
    aws,
    jitp_configure,
    jitp_run,
    job_text,
    moto_ca_certificates,
)

ENDPOINT = re.compile(r"^[a-z0-9]+-ats\.iot\.eu-west-1\.amazonaws\.com$")


def registered_template(endpoint: str) -> tuple[list[dict], dict]:
    """(ACTIVE CAs in moto, the template of the only one) read with a separate client."""
    cas = [c for c in moto_ca_certificates(endpoint) if c["status"] == "ACTIVE"]
    assert len(cas) == 1, cas
    described = aws("iot", endpoint).describe_ca_certificate(certificateId=cas[0]["certificate_id"])
    assert described["certificateDescription"]["status"] == "ACTIVE"
    return cas, described["registrationConfig"]


def run_setup_jitp(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "setup_jitp", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(AWS_ENDPOINT_URL=endpoint, CA_PASSWORD=CA_PASSWORD),
    )


@pytest.mark.django_db(transaction=True)
def test_setup_jitp_command_registers_one_active_ca_and_reruns_idempotently(
    moto_server: str,
    access_key,
    jitp_role: str,  # noqa: ANN001
) -> None:
    args = [
        "--access-key-id",
        access_key.access_key_id,
        "--role-arn",
        jitp_role,
        "--generate-ca",
        "CN=Fleet CA,O=ACME,C=DE",
    ]
    first = run_setup_jitp(moto_server, *args)
    assert first.returncode == 0, first.stderr
    printed = re.search(r"^Data endpoint: (\S+)$", first.stdout, re.M)
    assert printed, first.stdout
    assert ENDPOINT.match(printed.group(1))
    assert "Step 6/6" in first.stdout

    row = JitpSettings.objects.get()
    assert row.data_endpoint == printed.group(1)
    assert row.registered_ca_alias == "jitp-ca"
    cas, config = registered_template(moto_server)
    assert cas[0]["certificate_id"] == row.aws_ca_certificate_id
    assert config["roleArn"] == jitp_role
    body = json.loads(config["templateBody"])
    thing = body["Resources"]["thing"]["Properties"]
    assert thing["ThingName"] == {"Ref": "AWS::IoT::Certificate::CommonName"}
    assert "AWS::IoT::Certificate::CommonName" in body["Parameters"]
    assert body["Resources"]["certificate"]["Properties"]["Status"] == "ACTIVE"
    policy = json.loads(body["Resources"]["policy"]["Properties"]["PolicyDocument"])
    assert policy == policy_document_build(
        mode="least_privilege", region="eu-west-1", account_id="123456789012"
    )

    second = run_setup_jitp(moto_server, *args)
    assert second.returncode == 0, second.stderr
    assert "Updated the CA registered in AWS IoT" in second.stdout
    again, _ = registered_template(moto_server)
    assert again[0]["certificate_id"] == cas[0]["certificate_id"]
    assert CertificateAuthority.objects.count() == 1
    for output in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert CA_PASSWORD not in output
        assert SECRET not in output
        assert "PRIVATE KEY" not in output


@pytest.mark.django_db(transaction=True)
def test_setup_jitp_command_failure_exits_non_zero_with_one_sentence(
    moto_server: str,
    access_key,  # noqa: ANN001
) -> None:
    result = run_setup_jitp(
        moto_server,
        "--access-key-id",
        access_key.access_key_id,
        "--role-arn",
        "arn:aws:iam::123456789012:role/NoSuchRole",
        "--generate-ca",
        "CN=X",
    )
    assert result.returncode != 0
    assert "does not exist in this AWS account" in result.stderr
    assert "[NoSuchEntity]" in result.stderr
    assert "Traceback" not in result.stderr
    assert moto_ca_certificates(moto_server) == []


@pytest.mark.django_db
def test_least_privilege_policy_scopes_everything_to_the_thing_name() -> None:
    policy = policy_document_build(
        mode="least_privilege", region="eu-west-1", account_id="123456789012"
    )
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    prefix = "arn:aws:iot:eu-west-1:123456789012"
    assert by_sid["ConnectAsOwnThingName"]["Resource"] == f"{prefix}:client/{THING_NAME_VARIABLE}"
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            assert THING_NAME_VARIABLE in resource
            assert re.search(r"(client|topic|topicfilter)/(\$aws/)?(things/)?\$\{iot:", resource)
    assert set(by_sid["OwnTopics"]["Resource"]) == {
        f"{prefix}:topic/things/{THING_NAME_VARIABLE}/*",
        f"{prefix}:topic/$aws/things/{THING_NAME_VARIABLE}/*",
    }
    seven = policy_document_build(
        mode="seven_actions_all", region="eu-west-1", account_id="123456789012"
    )
    assert seven["Statement"] == [{"Effect": "Allow", "Action": SEVEN_ACTIONS, "Resource": "*"}]


@pytest.mark.django_db
def test_template_declares_every_certificate_parameter_it_references() -> None:
    row = JitpSettings(
        thing_type_name="controller",
        thing_groups="plant-1, eu",
        billing_group="fleet",
        attributes={"country": "AWS::IoT::Certificate::Country", "vendor": "acme"},
    )
    body = template_body_build(row=row, region="eu-west-1", account_id="123456789012")
    thing = body["Resources"]["thing"]["Properties"]
    assert thing["ThingTypeName"] == "controller"
    assert thing["ThingGroups"] == ["plant-1", "eu"]
    assert thing["BillingGroup"] == "fleet"
    assert thing["AttributePayload"] == {
        "country": {"Ref": "AWS::IoT::Certificate::Country"},
        "vendor": "acme",
    }
    referenced = set(re.findall(r'"Ref": "(AWS::IoT::Certificate::\w+)"', json.dumps(body)))
    assert referenced <= set(body["Parameters"])
    assert template_certificate_parameters(body) == {
        "AWS::IoT::Certificate::CommonName",
        "AWS::IoT::Certificate::Country",
    }


@pytest.mark.django_db
def test_existing_ca_sni_only_seven_actions(
    moto_server: str,
    access_key,
    jitp_role: str,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca_generate(alias="fleet-ca", dn="CN=Existing CA,C=DE", password=CA_PASSWORD)
    monkeypatch.setenv("CA_PASSWORD", CA_PASSWORD)
    out = io.StringIO()
    call_command(
        "setup_jitp",
        "--access-key-id",
        access_key.access_key_id,
        "--role-arn",
        jitp_role,
        "--ca-alias",
        "fleet-ca",
        "--sni-only",
        "--policy",
        "seven-actions",
        stdout=out,
    )
    assert "SNI_ONLY mode: no registration code" in out.getvalue()
    _, config = registered_template(moto_server)
    body = json.loads(config["templateBody"])
    policy = json.loads(body["Resources"]["policy"]["Properties"]["PolicyDocument"])
    assert policy["Statement"][0]["Action"] == SEVEN_ACTIONS
    register = AwsApiCall.objects.get(operation="RegisterCACertificate")
    assert register.parameters["certificateMode"] == "SNI_ONLY"
    assert "verificationCertificate" not in register.parameters
    assert register.parameters["allowAutoRegistration"] is True
    assert register.parameters["registrationConfig"]["roleArn"] == "***"
    assert not AwsApiCall.objects.filter(operation="GetRegistrationCode").exists()


@pytest.mark.django_db
def test_default_mode_sends_a_verification_certificate_signed_by_the_ca(
    moto_server: str,
    access_key,
    jitp_role: str,  # noqa: ANN001
) -> None:
    from cryptography import x509

    import provisioning.jitp.steps as jitp

    jitp_configure(access_key, jitp_role)
    sent: list[dict] = []
    codes: list[str] = []
    original = jitp.aws_client

    def client(service: str, **kwargs: object):  # noqa: ANN202
        made = original(service, **kwargs)
        made.meta.events.register(
            "provide-client-params.iot.RegisterCACertificate",
            lambda params, **_: sent.append(dict(params)),
        )
        made.meta.events.register(
            "after-call.iot.GetRegistrationCode",
            lambda parsed, **_: codes.append(parsed["registrationCode"]),
        )
        return made

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jitp, "aws_client", client)
        job = jitp_run()
    assert job.status == Job.Status.SUCCEEDED, job.result
    code = AwsApiCall.objects.filter(operation="GetRegistrationCode").count()
    assert code == 1
    verification = x509.load_pem_x509_certificate(sent[0]["verificationCertificate"].encode())
    ca_cert = x509.load_pem_x509_certificate(
        CertificateAuthority.objects.get().certificate_pem.encode()
    )
    assert verification.issuer == ca_cert.subject
    verification.verify_directly_issued_by(ca_cert)
    cn = verification.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert codes == [cn]
    assert sent[0]["certificateMode"] == "DEFAULT"


def _profile(ca: CertificateAuthority, name: str, **fields: str) -> SigningProfile:
    return SigningProfile.objects.create(
        name=name, ca=ca, ca_password=CA_PASSWORD, country="DE", **fields
    )


@pytest.mark.django_db
def test_preflight_blocks_template_fields_a_profile_does_not_put_in_certificates(
    moto_server: str,
    access_key,
    jitp_role: str,  # noqa: ANN001
) -> None:
    ca = ca_generate(alias="fleet-ca", dn="CN=Fleet CA,C=DE", password=CA_PASSWORD)
    _profile(ca, "with-org", organization="ACME")
    _profile(ca, "no-org")
    jitp_configure(
        access_key,
        jitp_role,
        ca_source="existing",
        attributes={"org": "AWS::IoT::Certificate::Organization"},
    )
    job = jitp_run()
    assert job.status == Job.Status.FAILED
    assert job.error_code == "TemplateProfileMismatch"
    assert "Signing profile 'no-org' does not put Organization" in job.result
    assert moto_ca_certificates(moto_server) == []
    assert JitpSettings.objects.get().last_result.startswith("Failed (TemplateProfileMismatch)")

    SigningProfile.objects.filter(name="no-org").update(organization="ACME")
    job = jitp_run()
    assert job.status == Job.Status.SUCCEEDED, job.result
    assert "'no-org', 'with-org'" in job_text(job)


@pytest.mark.django_db
def test_no_profile_yet_warns_but_does_not_block(
    moto_server: str,
    access_key,  # noqa: ANN001
    jitp_role: str,
) -> None:
    jitp_configure(access_key, jitp_role)
    job = jitp_run()
    assert job.status == Job.Status.SUCCEEDED, job.result
    warning = job.log_lines.get(level="warning")
    assert "No signing profile signs with CA 'fleet-ca' yet" in warning.message
    assert job.progress_done == 6


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "code", "sentence"),
    [
        ({"ca_source": "existing", "ca_alias": "missing"}, "CaNotFound", "no CA 'missing'"),
        (
            {"ca_source": "existing", "ca_password": "wrong-password"},
            "WrongCaPassword",
            "password for CA 'fleet-ca' is wrong",
        ),
        ({}, "CaAliasExists", "already exists in the key store"),
    ],
)
def test_ca_problems_fail_with_a_sentence(
    moto_server: str,
    access_key,
    jitp_role: str,  # noqa: ANN001
    fields: dict,
    code: str,
    sentence: str,
) -> None:
    ca_generate(alias="fleet-ca", dn="CN=Fleet CA,C=DE", password=CA_PASSWORD)
    jitp_configure(access_key, jitp_role, **fields)
    job = jitp_run()
    assert job.status == Job.Status.FAILED
    assert job.error_code == code
    assert sentence in job.result
    assert "wrong-password" not in job_text(job)
    assert moto_ca_certificates(moto_server) == []


@pytest.mark.django_db
def test_role_that_iot_cannot_assume_is_refused(moto_server: str, access_key) -> None:  # noqa: ANN001
    role = aws("iam", moto_server).create_role(
        RoleName="LambdaRole",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    jitp_configure(access_key, role)
    job = jitp_run()
    assert job.error_code == "RoleNotAssumable"
    assert "add iot.amazonaws.com" in job.result


@pytest.mark.django_db
def test_disabled_aws_service_and_purged_key_fail_before_any_call(
    moto_server: str,
    access_key,
    jitp_role: str,  # noqa: ANN001
) -> None:
    from provisioning.aws import aws_service_get

    jitp_configure(access_key, jitp_role)
    access_key.secret = None
    access_key.save()
    job = jitp_run()
    assert job.error_code == "AccessKeyPurged"
    assert "enter it again" in job.result

    service = aws_service_get()
    service.enabled = False
    service.save()
    job = jitp_run()
    assert job.error_code == "AwsServiceDisabled"
    assert not AwsApiCall.objects.exists()


@pytest.mark.django_db
def test_command_refuses_bad_input_with_sentences(access_key, monkeypatch) -> None:  # noqa: ANN001
    base = ["setup_jitp", "--access-key-id", access_key.access_key_id, "--generate-ca", "CN=X"]
    monkeypatch.delenv("CA_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="CA_PASSWORD"):
        call_command(*base, "--role-arn", "arn:aws:iam::123456789012:role/R")
    monkeypatch.setenv("CA_PASSWORD", CA_PASSWORD)
    with pytest.raises(CommandError, match="An IAM role ARN looks like"):
        call_command(*base, "--role-arn", "not-an-arn")
    with pytest.raises(CommandError, match="There is no access key AKIAUNKNOWN"):
        call_command(
            "setup_jitp", "--access-key-id", "AKIAUNKNOWN", "--role-arn", "x", "--ca-alias", "a"
        )
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_job_cancelled_while_running_stops_between_steps(
    moto_server,
    access_key,  # noqa: ANN001
    jitp_role: str,
) -> None:
    import provisioning.jitp.steps as jitp
    from provisioning.jobs import job_cancel

    jitp_configure(access_key, jitp_role)
    original = jitp.Run.load_ca

    def load_then_cancel(self) -> None:  # noqa: ANN001
        original(self)
        job_cancel(job=self.job)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jitp.Run, "load_ca", load_then_cancel)
        job = jitp_run()
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert "Step 3/6" not in job_text(job)
    assert moto_ca_certificates(moto_server) == []
