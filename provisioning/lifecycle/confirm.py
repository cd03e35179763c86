"""The confirm action: read a certificate's twin in AWS and check it against what JITP should
have made of it (ACTIVE, attached to the thing named by its CN, with the JITP policy).

A certificate still PENDING_ACTIVATION right after a device's first connection may be in
the middle of JITP's drop-and-reconnect, so the action is retried a few times
(``AWS_CONFIRM_ATTEMPTS``) before it settles with the reason as the twin's note. A renewed
certificate confirmed ACTIVE on its thing has proven itself: its predecessors are retired.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from django.conf import settings
from django.utils import timezone

from signing.models import JITP_PARAMETER_FOR_FIELD
from signing.services import certificate_aws_observed

from ..aws import AwsError
from ..jitp.documents import policy_document_build, template_body_build
from ..jitp.documents import template_certificate_parameters as template_parameters
from ..jitp.services import jitp_settings_get
from .models import AwsAction
from .operations import Aws, attached_policies, describe, principal_things

PENDING_CODE = "CertificatePendingActivation"

_FIELD_OIDS = {
    "CN": x509.NameOID.COMMON_NAME,
    "C": x509.NameOID.COUNTRY_NAME,
    "O": x509.NameOID.ORGANIZATION_NAME,
    "OU": x509.NameOID.ORGANIZATIONAL_UNIT_NAME,
    "ST": x509.NameOID.STATE_OR_PROVINCE_NAME,
    "dnQualifier": x509.NameOID.DN_QUALIFIER,
    "serialNumber": x509.NameOID.SERIAL_NUMBER,
}


def _arn_parts(arn: str) -> tuple[str, str]:
    """(region, account id) of an AWS IoT ARN (arn:aws:iot:REGION:ACCOUNT:cert/ID)."""
    parts = arn.split(":")
    return (parts[3], parts[4]) if len(parts) > 4 else ("", "")


def subject_parameters(certificate_pem: str) -> set[str]:
    """The JITP template parameters the certificate's subject can fill."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    return {
        JITP_PARAMETER_FOR_FIELD[name]
        for name, oid in _FIELD_OIDS.items()
        if cert.subject.get_attributes_for_oid(oid)
    }


def missing_template_parameters(certificate_pem: str, arn: str) -> list[str]:
    """Template parameters of the JITP settings that the certificate's subject lacks."""
    region, account = _arn_parts(arn)
    body = template_body_build(row=jitp_settings_get(), region=region, account_id=account)
    missing = template_parameters(body) - subject_parameters(certificate_pem)
    return sorted(p.rsplit("::", 1)[-1] for p in missing)


def _policy_matches(aws: Aws, names: list[str], arn: str) -> bool:
    """Whether one of the attached policies has the JITP settings' policy document."""
    region, account = _arn_parts(arn)
    expected = policy_document_build(
        mode=jitp_settings_get().policy_mode, region=region, account_id=account
    )
    for name in names:
        document = aws.call("get_policy", policyName=name).get("policyDocument") or "{}"
        try:
            if json.loads(document) == expected:
                return True
        except ValueError:
            continue
    return False


def confirm(aws: Aws, action: AwsAction) -> None:
    """Observe the certificate in AWS, note what differs from JITP's result, and retire the
    predecessors of a renewed certificate that is ACTIVE on its thing."""
    cert = action.certificate
    desc = describe(aws, action.aws_certificate_id)
    observed: dict[str, Any] = {"observed_at": timezone.now(), "note": ""}
    if desc is None:
        observed.update(status="NOT_FOUND", thing="", policies=[])
        if cert is not None:
            observed["note"] = "AWS does not know this certificate (never connected, or deleted)."
    else:
        arn = desc["certificateArn"]
        things = principal_things(aws, arn)
        policies = attached_policies(aws, arn)
        status = str(desc.get("status", ""))
        observed.update(status=status, thing=",".join(things), policies=policies)
        if cert is not None:
            observed["note"] = _note(aws, cert, status, things, policies, arn)
    if cert is None:
        return
    certificate_aws_observed(certificate=cert, **observed)
    unsettled = observed["status"] in ("PENDING_ACTIVATION", "NOT_FOUND")
    if unsettled and action.attempts < settings.AWS_CONFIRM_ATTEMPTS:
        # Maybe still in JITP's drop and reconnect: look again after the backoff.
        raise AwsError(observed["note"], code=PENDING_CODE)
    if observed["status"] == "ACTIVE" and observed["thing"].split(",").count(cert.common_name):
        from .retirement import certificate_proven

        certificate_proven(certificate=cert)


def _note(
    aws: Aws,
    cert: Any,
    status: str,
    things: list[str],
    policies: list[str],
    arn: str,
) -> str:
    if status == "PENDING_ACTIVATION":
        missing = missing_template_parameters(cert.certificate_pem, arn)
        why = (
            "the JITP template needs " + ", ".join(missing) + ", which the subject lacks"
            if missing
            else "JITP did not activate it (check the template and the IAM role)"
        )
        return f"Stuck in PENDING_ACTIVATION: {why}."
    if status != "ACTIVE":
        return f"The certificate is {status} in AWS."
    if cert.common_name not in things:
        shown = ", ".join(things) or "no thing"
        return f"Attached to {shown}, not to the thing {cert.common_name}."
    if not policies:
        return "No policy is attached; the device cannot publish."
    if not _policy_matches(aws, policies, arn):
        return "The attached policy is not the JITP settings' policy."
    return ""
