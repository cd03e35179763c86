"""What the fleet audit reads from AWS IoT: the registered CAs, the certificates under ours,
their things and policies, and the account's things. Every listing is paginated and every
call goes through the outbox runner's pacer (``provisioning.lifecycle``'s ``Aws``).

Calls for an account with C registered CAs (K of them ours), N certificates under ours,
T things and P distinct policies attached to those certificates::

    1 + K * ceil(N / 250) + 2 * N + ceil(T / 250) + P

(list_ca_certificates, list_certificates_by_ca pages, list_principal_things and
list_attached_policies per certificate, list_things pages, get_policy per policy).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from signing.models import CertificateAuthority

from ..jitp.documents import aws_certificate_id
from ..lifecycle.operations import Aws

PAGE = 250


@dataclass
class AwsCertificate:
    certificate_id: str
    arn: str
    status: str
    ca_alias: str
    things: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    """AWS's view of our part of the account."""

    cas: dict[str, str] = field(default_factory=dict)  # AWS CA id -> status
    our_cas: dict[str, CertificateAuthority] = field(default_factory=dict)  # AWS CA id -> CA
    certificates: dict[str, AwsCertificate] = field(default_factory=dict)
    things: set[str] = field(default_factory=set)
    policies: dict[str, Any] = field(default_factory=dict)  # name -> document (dict)
    policy_versions: dict[str, str] = field(default_factory=dict)

    def things_to_certificates(self) -> dict[str, list[AwsCertificate]]:
        out: dict[str, list[AwsCertificate]] = {}
        for cert in self.certificates.values():
            for thing in cert.things:
                out.setdefault(thing, []).append(cert)
        return out


def estimate_calls(*, certificates: int, things: int, our_cas: int = 1, policies: int = 1) -> int:
    """AWS calls of one audit (the formula in this module's docstring)."""
    pages = max(1, math.ceil(certificates / PAGE))
    return 1 + our_cas * pages + 2 * certificates + max(1, math.ceil(things / PAGE)) + policies


def _policy(aws: Aws, snap: Snapshot, name: str, cache: dict[tuple[str, str], Any]) -> None:
    """The policy's default document, cached per name and version (across one process)."""
    if name in snap.policies:
        return
    try:
        answer = aws.call("get_policy", policyName=name)
    except ClientError:
        return
    version = str(answer.get("defaultVersionId", ""))
    key = (name, version)
    if key not in cache:
        try:
            cache[key] = json.loads(answer.get("policyDocument") or "{}")
        except ValueError:
            cache[key] = {}
    snap.policies[name] = cache[key]
    snap.policy_versions[name] = version


_POLICY_CACHE: dict[tuple[str, str], Any] = {}


def snapshot_read(aws: Aws) -> Snapshot:
    """Read AWS's view: CAs, certificates under our CAs with things and policies, things."""
    snap = Snapshot()
    key_store = {
        aws_certificate_id(ca.certificate_pem): ca for ca in CertificateAuthority.objects.all()
    }
    for ca in aws.pages("list_ca_certificates", "certificates", pageSize=PAGE):
        snap.cas[ca["certificateId"]] = str(ca.get("status", ""))
        if ca["certificateId"] in key_store:
            snap.our_cas[ca["certificateId"]] = key_store[ca["certificateId"]]
    for ca_id, ca in snap.our_cas.items():
        for item in aws.pages(
            "list_certificates_by_ca", "certificates", caCertificateId=ca_id, pageSize=PAGE
        ):
            snap.certificates[item["certificateId"]] = AwsCertificate(
                certificate_id=item["certificateId"],
                arn=item["certificateArn"],
                status=str(item.get("status", "")),
                ca_alias=ca.alias,
            )
    for cert in snap.certificates.values():
        cert.things = list(aws.pages("list_principal_things", "things", principal=cert.arn))
        cert.policies = [
            p["policyName"]
            for p in aws.pages("list_attached_policies", "policies", target=cert.arn)
        ]
        for name in cert.policies:
            _policy(aws, snap, name, _POLICY_CACHE)
    snap.things = {t["thingName"] for t in aws.pages("list_things", "things", maxResults=PAGE)}
    return snap


def policy_too_broad(document: Any) -> str:
    """Why an Allow statement of the document is too broad ('' when none is)."""
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else list(actions)
        resources = [resources] if isinstance(resources, str) else list(resources)
        if any(a in ("iot:*", "*") for a in actions):
            return "it allows iot:* (every IoT action)"
        if "*" in resources:
            return "it allows " + ", ".join(sorted(actions)) + " on every resource (*)"
    return ""
