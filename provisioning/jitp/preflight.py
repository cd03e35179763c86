"""Step 1 of the JITP setup: check the settings, the access key, the IAM role and the signing
profiles before anything is created in AWS or in the key store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ValidationError

from signing.models import SigningProfile

from ..aws.client import aws_service_get
from ..aws.models import AccessKey, iot_region_choices
from .documents import template_body_build, template_certificate_parameters

if TYPE_CHECKING:
    from .steps import Run


def preflight(run: Run) -> None:
    """Fail the run with a sentence when the setup cannot work; log what was checked."""
    row = run.row
    key = AccessKey.objects.filter(pk=row.access_key_id or 0).first()
    if key is None:
        run.fail("Choose the AWS access key in the JITP settings.", "NoAccessKey")
    assert key is not None
    run.access_key = key
    if not row.role_arn:
        run.fail("Enter the IAM role ARN in the JITP settings.", "NoRoleArn")
    try:
        row.full_clean()
    except ValidationError as exc:
        run.fail("The JITP settings are not valid: " + " ".join(exc.messages), "InvalidSettings")
    if not row.ca_password:
        run.fail("Enter the CA password in the JITP settings.", "NoCaPassword")
    run.region = row.region or aws_service_get().region
    if run.region not in {r for r, _ in iot_region_choices()}:
        run.fail(
            f"AWS IoT Core is not offered in region {run.region}; choose another region.",
            "InvalidRegion",
        )
    identity = run.call(run.client("sts"), "get_caller_identity")
    run.account_id = str(identity.get("Account", ""))
    run.log(
        f"Access key {run.access_key.access_key_id} works in {run.region} "
        f"(account {run.account_id})."
    )

    iam = run.client("iam")
    role_name = row.role_arn.rsplit("/", 1)[-1]
    role = run.call(iam, "get_role", RoleName=role_name)["Role"]
    trust = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(trust, str):
        trust = json.loads(unquote(trust))
    if not _trusts_service(trust, "iot.amazonaws.com"):
        run.fail(
            "AWS IoT may not assume the IAM role: add iot.amazonaws.com as a "
            "trusted service in the role's trust policy.",
            "RoleNotAssumable",
        )
    run.log("The IAM role exists and trusts AWS IoT (iot.amazonaws.com).")
    role_account = row.role_arn.split(":")[4]
    if run.account_id and role_account != run.account_id:
        run.warn(
            "The IAM role belongs to another AWS account than the access key; AWS "
            "IoT only passes roles of its own account."
        )
    try:
        attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    except (ClientError, BotoCoreError):
        attached = None
    if attached is None:
        run.warn("Could not list the role's policies; make sure it holds AWSIoTThingsRegistration.")
    elif not any(p.get("PolicyName") == "AWSIoTThingsRegistration" for p in attached):
        run.warn(
            "The role has no AWSIoTThingsRegistration policy attached; JITP fails "
            "unless an inline policy grants the same rights."
        )

    run.body = template_body_build(row=row, region=run.region, account_id=run.account_id)
    needed = template_certificate_parameters(run.body)
    profiles = list(SigningProfile.objects.filter(ca__alias=row.ca_alias).order_by("name"))
    if not profiles:
        run.warn(
            f"No signing profile signs with CA '{row.ca_alias}' yet; make sure the "
            "profile you add puts these fields in certificates: "
            + ", ".join(sorted(p.rsplit("::", 1)[-1] for p in needed))
            + "."
        )
    for profile in profiles:
        missing = needed - profile.jitp_parameters()
        if missing:
            names = ", ".join(sorted(p.rsplit("::", 1)[-1] for p in missing))
            run.fail(
                f"Signing profile '{profile.name}' does not put {names} in its "
                "certificates, but the JITP template needs it (AWS refuses such "
                "devices); set the field in the profile or remove the attribute that "
                "uses it.",
                "TemplateProfileMismatch",
            )
    if profiles:
        run.log(
            "The template's certificate fields are in every certificate of "
            + ", ".join(f"'{p.name}'" for p in profiles)
            + "."
        )


def _trusts_service(document: dict[str, Any], service: str) -> bool:
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        if isinstance(services, str):
            services = [services]
        if service in services:
            return True
    return False
