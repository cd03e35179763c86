"""The documents the JITP setup sends to AWS: the device policy, the provisioning template
and the verification certificate, built from the settings row (pure, no AWS calls)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signing.keystore import ca_certificate, get_key_store
from signing.models import JITP_PARAMETER_FOR_FIELD, CertificateAuthority

from .models import JitpSettings

CERTIFICATE_ID_PARAMETER = "AWS::IoT::Certificate::Id"  # AWS-internal, always available
COMMON_NAME_PARAMETER = "AWS::IoT::Certificate::CommonName"
CERTIFICATE_FIELD_PARAMETERS = frozenset(JITP_PARAMETER_FOR_FIELD.values())
SEVEN_ACTIONS = [
    "iot:Connect",
    "iot:Publish",
    "iot:Subscribe",
    "iot:Receive",
    "iot:GetRetainedMessage",
    "iot:ListRetainedMessages",
    "iot:RetainPublish",
]
THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"


def aws_partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def policy_document_build(*, mode: str, region: str, account_id: str) -> dict[str, Any]:
    """The device policy the template attaches (INTERFACES.md: "the default device policy").

    Least privilege: connect only with client id = the thing's name (and only while the
    certificate is attached to that thing); publish, receive, retain and read retained messages
    only under ``things/<thing>/…`` and ``$aws/things/<thing>/…``; subscribe only to filters
    under those prefixes. iot:ListRetainedMessages has no resource-level scoping in AWS (it
    would list every retained topic of the account), so this mode leaves it out.
    """
    if mode == JitpSettings.PolicyMode.SEVEN_ACTIONS_ALL:
        return {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(SEVEN_ACTIONS), "Resource": "*"}],
        }
    arn = f"arn:{aws_partition(region)}:iot:{region}:{account_id}"
    thing = THING_NAME_VARIABLE
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsOwnThingName",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{thing}",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Sid": "OwnTopics",
                "Effect": "Allow",
                "Action": [
                    "iot:Publish",
                    "iot:Receive",
                    "iot:RetainPublish",
                    "iot:GetRetainedMessage",
                ],
                "Resource": [f"{arn}:topic/things/{thing}/*", f"{arn}:topic/$aws/things/{thing}/*"],
            },
            {
                "Sid": "OwnTopicFilters",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [
                    f"{arn}:topicfilter/things/{thing}/*",
                    f"{arn}:topicfilter/$aws/things/{thing}/*",
                ],
            },
        ],
    }


def certificate_resource() -> dict[str, Any]:
    """A provisioning template's certificate resource: the presented certificate, ACTIVE."""
    return {
        "Type": "AWS::IoT::Certificate",
        "Properties": {"CertificateId": {"Ref": CERTIFICATE_ID_PARAMETER}, "Status": "ACTIVE"},
    }


def template_body_build(*, row: JitpSettings, region: str, account_id: str) -> dict[str, Any]:
    """The JITP provisioning template: thing named after the certificate's CommonName,
    certificate ACTIVE, the chosen policy, optional thing type, groups, billing group and
    attributes. Every ``AWS::IoT::Certificate::*`` it references is declared in Parameters.
    """
    parameters = {COMMON_NAME_PARAMETER, CERTIFICATE_ID_PARAMETER}
    thing: dict[str, Any] = {"ThingName": {"Ref": COMMON_NAME_PARAMETER}}
    attributes: dict[str, Any] = {}
    for name, value in sorted((row.attributes or {}).items()):
        if value in CERTIFICATE_FIELD_PARAMETERS:
            attributes[name] = {"Ref": value}
            parameters.add(value)
        else:
            attributes[name] = value
    if attributes:
        thing["AttributePayload"] = attributes
    if row.thing_type_name:
        thing["ThingTypeName"] = row.thing_type_name
    if row.thing_group_list():
        thing["ThingGroups"] = row.thing_group_list()
    if row.billing_group:
        thing["BillingGroup"] = row.billing_group
    policy = policy_document_build(mode=row.policy_mode, region=region, account_id=account_id)
    return {
        "Parameters": {name: {"Type": "String"} for name in sorted(parameters)},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": thing},
            "certificate": certificate_resource(),
            "policy": {
                "Type": "AWS::IoT::Policy",
                "Properties": {"PolicyDocument": json.dumps(policy, separators=(",", ":"))},
            },
        },
    }


def template_certificate_parameters(body: dict[str, Any]) -> set[str]:
    """The certificate fields the template needs from every device certificate."""
    return set(body.get("Parameters", {})) - {CERTIFICATE_ID_PARAMETER}


def verification_certificate_build(
    *, ca: CertificateAuthority, password: str, registration_code: str
) -> str:
    """A throw-away certificate whose CN is the registration code, signed by the CA (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, registration_code)]))
        .issuer_name(ca_certificate(ca).subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=7))
    )
    cert = get_key_store().sign(ca, password, builder)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def aws_certificate_id(certificate_pem: str) -> str:
    """AWS IoT's certificate id: SHA-256 of the DER certificate, lower-case hex."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
