"""What each kind of AWS action does in AWS IoT, idempotently.

Each operation first reads what it needs and treats "already so" and "not found" as done,
so a second run after a crash or a lost acknowledgement changes nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from django.utils import timezone

from signing.services import certificate_aws_observed

from .models import AwsAction

Kind = AwsAction.Kind


class Aws:
    """The IoT client behind the runner's pacer: every call waits its turn."""

    def __init__(self, iot: Any, pacer: Any) -> None:
        self.iot = iot
        self.pacer = pacer

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        self.pacer.wait()
        return getattr(self.iot, operation)(**params)

    def pages(self, operation: str, key: str, **params: Any) -> list[Any]:
        """Every item of a paginated listing (``nextToken`` / ``nextMarker``), paced."""
        items: list[Any] = []
        while True:
            page = self.call(operation, **params)
            items.extend(page.get(key, []))
            token = page.get("nextToken") or page.get("nextMarker")
            if not token:
                return items
            params["nextToken" if "nextToken" in page else "marker"] = token


def _not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def describe(aws: Aws, certificate_id: str) -> dict[str, Any] | None:
    """The certificate's description in AWS, or None when AWS does not know it."""
    try:
        return aws.call("describe_certificate", certificateId=certificate_id)[
            "certificateDescription"
        ]
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise


def principal_things(aws: Aws, arn: str) -> list[str]:
    return aws.pages("list_principal_things", "things", principal=arn)


def attached_policies(aws: Aws, arn: str) -> list[str]:
    return [p["policyName"] for p in aws.pages("list_attached_policies", "policies", target=arn)]


def confirm(aws: Aws, action: AwsAction) -> None:
    """Read the certificate's status, thing and policies in AWS into the portal's twin."""
    desc = describe(aws, action.aws_certificate_id)
    observed: dict[str, Any] = {"observed_at": timezone.now()}
    if desc is None:
        observed.update(status="NOT_FOUND", thing="", policies=[])
    else:
        arn = desc["certificateArn"]
        things = principal_things(aws, arn)
        observed.update(
            status=desc.get("status", ""),
            thing=",".join(things),
            policies=attached_policies(aws, arn),
        )
    if action.certificate is not None:
        certificate_aws_observed(certificate=action.certificate, **observed)


def _set_status(aws: Aws, action: AwsAction, status: str, already: set[str]) -> None:
    desc = describe(aws, action.aws_certificate_id)
    if desc is None or desc.get("status") in already:
        return
    aws.call("update_certificate", certificateId=action.aws_certificate_id, newStatus=status)


def deactivate(aws: Aws, action: AwsAction) -> None:
    _set_status(aws, action, "INACTIVE", {"INACTIVE", "REVOKED"})


def revoke(aws: Aws, action: AwsAction) -> None:
    """Set REVOKED; a certificate AWS has not seen yet (its device never connected) is
    registered as REVOKED, so that JITP can never activate it later."""
    if describe(aws, action.aws_certificate_id) is None and action.certificate is not None:
        try:
            aws.call(
                "register_certificate",
                certificatePem=action.certificate.certificate_pem,
                caCertificatePem=action.certificate.ca.certificate_pem,
                status="REVOKED",
            )
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("CertificateValidationException", "ResourceNotFoundException"):
                return  # our CA is not registered in AWS: no device can get in with it
            if code != "ResourceAlreadyExistsException":  # JITP got there first: revoke it
                raise
    _set_status(aws, action, "REVOKED", {"REVOKED"})


def detach_thing(aws: Aws, action: AwsAction) -> None:
    desc = describe(aws, action.aws_certificate_id)
    if desc is None:
        return
    arn = desc["certificateArn"]
    things = [action.thing_name] if action.thing_name else principal_things(aws, arn)
    for thing in things:
        try:
            aws.call("detach_thing_principal", thingName=thing, principal=arn)
        except ClientError as exc:
            if not _not_found(exc):
                raise


def detach_policies(aws: Aws, action: AwsAction) -> None:
    desc = describe(aws, action.aws_certificate_id)
    if desc is None:
        return
    arn = desc["certificateArn"]
    for policy in attached_policies(aws, arn):
        try:
            aws.call("detach_policy", policyName=policy, target=arn)
        except ClientError as exc:
            if not _not_found(exc):
                raise


def delete(aws: Aws, action: AwsAction) -> None:
    """Delete the certificate; AWS refuses while it is ACTIVE or attached (then: retry)."""
    try:
        aws.call("delete_certificate", certificateId=action.aws_certificate_id)
    except ClientError as exc:
        if not _not_found(exc):
            raise


def move_to_group(aws: Aws, action: AwsAction) -> None:
    try:
        aws.call("describe_thing_group", thingGroupName=action.group_name)
    except ClientError as exc:
        if not _not_found(exc):
            raise
        aws.call("create_thing_group", thingGroupName=action.group_name)
    try:
        aws.call(
            "add_thing_to_thing_group",
            thingGroupName=action.group_name,
            thingName=action.thing_name,
        )
    except ClientError as exc:
        if not _not_found(exc):  # the thing is gone: nothing to quarantine
            raise


def delete_thing(aws: Aws, action: AwsAction) -> None:
    """Detach every principal from the thing, then delete it."""
    try:
        principals = aws.pages("list_thing_principals", "principals", thingName=action.thing_name)
    except ClientError as exc:
        if _not_found(exc):
            return
        raise
    for arn in principals:
        try:
            aws.call("detach_thing_principal", thingName=action.thing_name, principal=arn)
        except ClientError as exc:
            if not _not_found(exc):
                raise
    try:
        aws.call("delete_thing", thingName=action.thing_name)
    except ClientError as exc:
        if not _not_found(exc):
            raise


def deactivate_ca(aws: Aws, action: AwsAction) -> None:
    """A retired CA: INACTIVE, auto-registration off (done when AWS has it so or lacks it)."""
    try:
        desc = aws.call("describe_ca_certificate", certificateId=action.aws_certificate_id)
    except ClientError as exc:
        if _not_found(exc):
            return
        raise
    state = desc["certificateDescription"]
    if state.get("status") == "INACTIVE" and state.get("autoRegistrationStatus") != "ENABLE":
        return
    aws.call(
        "update_ca_certificate",
        certificateId=action.aws_certificate_id,
        newStatus="INACTIVE",
        newAutoRegistrationStatus="DISABLE",
    )


def _confirm(aws: Aws, action: AwsAction) -> None:
    from .confirm import confirm as confirm_checked  # it builds on this module's readers

    confirm_checked(aws, action)


OPERATIONS: dict[str, Callable[[Aws, AwsAction], None]] = {
    Kind.CONFIRM: _confirm,
    Kind.DEACTIVATE: deactivate,
    Kind.REVOKE: revoke,
    Kind.DETACH_THING: detach_thing,
    Kind.DETACH_POLICIES: detach_policies,
    Kind.DELETE: delete,
    Kind.MOVE_TO_GROUP: move_to_group,
    Kind.DELETE_THING: delete_thing,
    Kind.DEACTIVATE_CA: deactivate_ca,
}
