"""Fleet provisioning by claim, portal side: template, policies, claim certificate, bundle.

The same flow as the AWS IoT Device Client's: a station connects with a shared claim
certificate that may do nothing but call ``$aws/certificates/create-from-csr/*`` and
``$aws/provisioning-templates/<name>/provision/*``; the FLEET_PROVISIONING template then
creates the thing (name = prefix + ``SerialNumber`` parameter) and attaches the
least-privilege device policy. See docs/claim-provisioning.md.

``claim_setup_run`` is idempotent: it creates what is missing, adds a template / policy
version only when the body changed, and keeps an ACTIVE claim certificate unless asked to
rotate it.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.handoff import send_task_on_commit
from portal.services import Actor, audit_record

from ..aws.client import AwsError, aws_client, oldest_non_default_version
from ..aws.models import AccessKey
from ..aws.redaction import redact_text
from ..jobs.models import Job
from ..jobs.services import job_create, job_finish, job_log, job_progress, job_start
from .documents import claim_policy_document, claim_template_body, device_policy_document
from .models import ClaimSetup

MAX_VERSIONS = 5  # AWS keeps at most 5 versions of a policy and of a provisioning template
STEPS = 6


@transaction.atomic
def claim_setup_save(
    *,
    template_name: str,
    region: str,
    access_key_id: str,
    role_arn: str,
    thing_name_prefix: str = "",
    thing_type: str = "",
    actor: Actor = None,
) -> ClaimSetup:
    """Create or update the parameters of a claim setup (nothing is sent to AWS here)."""
    key = AccessKey.objects.filter(access_key_id=access_key_id).first()
    if key is None:
        raise ValidationError(
            {
                "access_key": (
                    f"There is no access key {access_key_id}; add it with add_access_key first."
                )
            }
        )
    setup = ClaimSetup.objects.select_for_update().filter(template_name=template_name).first()
    if setup is None:
        user: Any = actor if getattr(actor, "is_authenticated", False) else None
        setup = ClaimSetup(template_name=template_name, created_by=user)
    setup.region = region
    setup.access_key = key
    setup.role_arn = role_arn
    setup.thing_name_prefix = thing_name_prefix
    setup.thing_type = thing_type
    setup.full_clean()
    setup.save()
    audit_record(
        action="claim_setup_save",
        obj=setup,
        actor=actor,
        detail={"region": region, "access_key_id": access_key_id},
    )
    return setup


@transaction.atomic
def claim_setup_start(
    *,
    setup: ClaimSetup,
    actor: Actor = None,
    new_claim_certificate: bool = False,
    run_async: bool = True,
) -> Job:
    """A CLAIM_SETUP job row; with ``run_async`` the Celery task starts after commit."""
    job = job_create(
        kind=Job.Kind.CLAIM_SETUP,
        actor=actor,
        total=STEPS,
        title=f"Fleet provisioning (claim) setup: {setup.template_name}",
    )
    ClaimSetup.objects.filter(pk=setup.pk).update(job=job)
    audit_record(
        action="claim_setup_start",
        obj=setup,
        actor=actor,
        detail={"job": job.pk, "new_claim_certificate": new_claim_certificate},
    )
    if run_async:
        from .tasks import claim_setup_task

        send_task_on_commit(claim_setup_task, job.pk, setup.pk, new_claim_certificate)
    return job


class _Step(Exception):
    def __init__(self, sentence: str, code: str) -> None:
        super().__init__(sentence)
        self.code = code


def _call(job: Job, what: str, fn: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "ClientError"))
        raise _Step(
            f"{what} failed: {code}: {redact_text(str(err.get('Message', '')))}", code
        ) from None
    except BotoCoreError as exc:
        raise _Step(f"{what} failed: {redact_text(str(exc))}", type(exc).__name__) from None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ensure_policy(job: Job, iot: Any, name: str, document: str) -> None:
    try:
        current = iot.get_policy(policyName=name)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise _Step(
                f"Reading policy {name} failed: {_error_code(exc)}.", _error_code(exc)
            ) from None
        _call(
            job,
            f"Creating policy {name}",
            iot.create_policy,
            policyName=name,
            policyDocument=document,
        )
        job_log(job=job, message=f"Created policy {name}.")
        return
    if json.loads(current.get("policyDocument") or "{}") == json.loads(document):
        job_log(job=job, message=f"Policy {name} is up to date.")
        return
    versions = _call(job, "Listing policy versions", iot.list_policy_versions, policyName=name).get(
        "policyVersions", []
    )
    old = oldest_non_default_version(versions) if len(versions) >= MAX_VERSIONS else None
    if old is not None:
        _call(
            job,
            "Deleting an old policy version",
            iot.delete_policy_version,
            policyName=name,
            policyVersionId=old["versionId"],
        )
    _call(
        job,
        f"Updating policy {name}",
        iot.create_policy_version,
        policyName=name,
        policyDocument=document,
        setAsDefault=True,
    )
    job_log(job=job, message=f"Policy {name} has a new default version.")


def _ensure_template(job: Job, iot: Any, setup: ClaimSetup, body: str) -> tuple[str, int]:
    name = setup.template_name
    try:
        current = iot.describe_provisioning_template(templateName=name)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise _Step(
                f"Reading template {name} failed: {_error_code(exc)}.", _error_code(exc)
            ) from None
        created = _call(
            job,
            f"Creating provisioning template {name}",
            iot.create_provisioning_template,
            templateName=name,
            description="Fleet provisioning by claim (fleet portal).",
            templateBody=body,
            enabled=True,
            provisioningRoleArn=setup.role_arn,
            type="FLEET_PROVISIONING",
        )
        job_log(job=job, message=f"Created fleet provisioning template {name}.")
        return created["templateArn"], int(created.get("defaultVersionId") or 1)
    if current.get("type", "FLEET_PROVISIONING") != "FLEET_PROVISIONING":
        raise _Step(
            f"A {current.get('type')} template named {name} already exists; choose "
            "another template name.",
            "TemplateTypeMismatch",
        )
    _call(
        job,
        f"Enabling template {name}",
        iot.update_provisioning_template,
        templateName=name,
        enabled=True,
        provisioningRoleArn=setup.role_arn,
    )
    version = int(current.get("defaultVersionId") or 1)
    same = False
    try:
        same = json.loads(current.get("templateBody") or "{}") == json.loads(body)
    except ValueError:
        same = False
    if same:
        job_log(job=job, message=f"Template {name} is up to date (version {version}).")
        return current["templateArn"], version
    versions = _call(
        job, "Listing template versions", iot.list_provisioning_template_versions, templateName=name
    ).get("versions", [])
    old = oldest_non_default_version(versions) if len(versions) >= MAX_VERSIONS else None
    if old is not None:
        _call(
            job,
            "Deleting an old template version",
            iot.delete_provisioning_template_version,
            templateName=name,
            versionId=old["versionId"],
        )
    made = _call(
        job,
        f"Updating template {name}",
        iot.create_provisioning_template_version,
        templateName=name,
        templateBody=body,
        setAsDefault=True,
    )
    version = int(made.get("versionId") or version + 1)
    job_log(job=job, message=f"Template {name} has a new default version {version}.")
    return current["templateArn"], version


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 6 or not parts[4]:
        raise _Step(f"Cannot read the account id from {arn}.", "UnexpectedArn")
    return parts[4]


def claim_setup_run(*, job_id: int, setup_id: int, new_claim_certificate: bool = False) -> Job:
    """Do the AWS work of a CLAIM_SETUP job; every outcome ends in the job row."""
    job = Job.objects.get(pk=job_id)
    if not job_start(job=job):
        return job
    setup = ClaimSetup.objects.select_related("access_key").get(pk=setup_id)
    try:
        iot = aws_client("iot", access_key=setup.access_key, region=setup.region)
        endpoint = _call(
            job, "DescribeEndpoint", iot.describe_endpoint, endpointType="iot:Data-ATS"
        )["endpointAddress"]
        job_log(job=job, message=f"Data endpoint: {endpoint}.")
        job_progress(job=job, done=1)

        old_cert_id = setup.claim_certificate_id
        keep = False
        if old_cert_id and not new_claim_certificate:
            try:
                desc = iot.describe_certificate(certificateId=old_cert_id)
                keep = desc["certificateDescription"]["status"] == "ACTIVE"
            except ClientError:
                keep = False
        if keep:
            cert_arn = setup.claim_certificate_arn
            job_log(job=job, message=f"Keeping the ACTIVE claim certificate {old_cert_id[:12]}….")
        else:
            made = _call(
                job, "CreateKeysAndCertificate", iot.create_keys_and_certificate, setAsActive=True
            )
            cert_arn = made["certificateArn"]
            ClaimSetup.objects.filter(pk=setup.pk).update(
                claim_certificate_id=made["certificateId"],
                claim_certificate_arn=cert_arn,
                claim_certificate_pem=made["certificatePem"],
            )
            setup.refresh_from_db()
            setup.claim_private_key_pem = made["keyPair"]["PrivateKey"]
            setup.save(update_fields=["claim_private_key_pem"])
            job_log(job=job, message=f"Created claim certificate {made['certificateId'][:12]}….")
        job_progress(job=job, done=1)
        account = _account_of(cert_arn)

        _ensure_policy(
            job,
            iot,
            setup.device_policy_name,
            device_policy_document(region=setup.region, account=account),
        )
        job_progress(job=job, done=1)
        template_arn, version = _ensure_template(job, iot, setup, claim_template_body(setup))
        job_progress(job=job, done=1)
        _ensure_policy(
            job,
            iot,
            setup.claim_policy_name,
            claim_policy_document(
                region=setup.region, account=account, template_name=setup.template_name
            ),
        )
        _call(
            job,
            "AttachPolicy",
            iot.attach_policy,
            policyName=setup.claim_policy_name,
            target=cert_arn,
        )
        job_log(job=job, message=f"Attached {setup.claim_policy_name} to the claim certificate.")
        job_progress(job=job, done=1)
        if old_cert_id and old_cert_id != setup.claim_certificate_id:
            _call(
                job,
                "Deactivating the old claim certificate",
                iot.update_certificate,
                certificateId=old_cert_id,
                newStatus="INACTIVE",
            )
            job_log(job=job, message=f"Deactivated the old claim certificate {old_cert_id[:12]}….")
        job_progress(job=job, done=1)
    except (_Step, AwsError) as exc:
        code = getattr(exc, "code", "") or type(exc).__name__
        ClaimSetup.objects.filter(pk=setup.pk).update(status=ClaimSetup.Status.FAILED)
        return job_finish(job=job, status=Job.Status.FAILED, result=str(exc), error_code=code)
    ClaimSetup.objects.filter(pk=setup.pk).update(
        status=ClaimSetup.Status.READY,
        endpoint=endpoint,
        template_arn=template_arn,
        template_version_id=version,
        ready_at=timezone.now(),
    )
    return job_finish(
        job=job,
        status=Job.Status.SUCCEEDED,
        result=f"Template {setup.template_name} (version {version}) and its claim certificate "
        f"are ready; stations provision at {endpoint}.",
    )
