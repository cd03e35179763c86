"""Services of the AWS concern: the AWS service settings, access keys and the call log.

Every write goes through here, whichever door (admin, command, task, API) it comes in by.
Secrets are taken as arguments and stored encrypted; they never reach a log line, an audit
entry or an exception message.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.services import Actor, acting_user, audit_record

from .client import AwsError, aws_client, aws_service_get
from .models import AccessKey, AwsApiCall, AwsService

logger = logging.getLogger(__name__)


# The alphabet AWS uses for secret access keys (base64 without padding quirks).
_SECRET_RE = re.compile(r"^[A-Za-z0-9/+=]{40}$")
_ACCESS_KEY_ID_RE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")

ACCESS_KEY_ID_MESSAGE = (
    "An access key id is AKIA or ASIA followed by 16 upper-case letters or digits."
)
SECRET_MESSAGE = (
    "A secret access key is exactly 40 characters of letters, digits, '/', '+' and '='."
)


def access_key_id_check(access_key_id: str) -> None:
    """Raise a ValidationError (one sentence) unless ``access_key_id`` has AWS's shape."""
    if not _ACCESS_KEY_ID_RE.match(access_key_id or ""):
        raise ValidationError(ACCESS_KEY_ID_MESSAGE, code="invalid_access_key_id")


def access_key_secret_check(secret: str) -> None:
    """Raise a ValidationError (never quoting the secret) unless it has AWS's shape."""
    if not _SECRET_RE.match(secret or ""):
        raise ValidationError(SECRET_MESSAGE, code="invalid_secret")


@transaction.atomic
def access_key_create(
    *,
    access_key_id: str,
    secret: str,
    store_for: str,
    description: str = "",
    actor: Actor = None,
    now: datetime | None = None,
) -> AccessKey:
    """Store an access key encrypted until its storage period elapses.

    The storage period is one of :class:`AccessKey.StorePeriod` (at most 30 days) so a
    forgotten key cannot outlive the work it was entered for.
    """
    access_key_id = (access_key_id or "").strip()
    secret = (secret or "").strip()
    errors: dict[str, list[ValidationError]] = {}
    try:
        access_key_id_check(access_key_id)
    except ValidationError as exc:
        errors["access_key_id"] = [exc]
    try:
        access_key_secret_check(secret)
    except ValidationError as exc:
        errors["secret"] = [exc]
    if store_for not in AccessKey.PERIODS:
        errors["store_for"] = [
            ValidationError(
                "The storage period must be one of " + ", ".join(AccessKey.PERIODS) + ".",
                code="invalid_store_for",
            )
        ]
    if (
        "access_key_id" not in errors
        and AccessKey.objects.filter(access_key_id=access_key_id).exists()
    ):
        errors["access_key_id"] = [
            ValidationError(
                f"Access key {access_key_id} is already stored; delete it first to enter it again.",
                code="duplicate",
            )
        ]
    if errors:
        raise ValidationError(errors)

    now = now or timezone.now()
    key = AccessKey(
        access_key_id=access_key_id,
        secret=secret,
        store_for=store_for,
        description=description,
        created_at=now,
        purge_at=now + AccessKey.PERIODS[store_for],
        created_by=acting_user(actor),
    )
    key.full_clean()
    key.save()
    audit_record(
        action="access_key_create",
        obj=key,
        actor=actor,
        detail={"store_for": store_for, "purge_at": key.purge_at.isoformat()},
    )
    logger.info("Stored access key %s until %s.", access_key_id, key.purge_at.isoformat())
    return key


def access_key_purge_due(*, now: datetime | None = None, actor: Actor = None) -> int:
    """Purge every stored key whose storage period has elapsed; return how many were purged.

    Safe to run twice at once (beat and the admin action, or two workers): each key is
    purged by a conditional UPDATE that only one caller can win, and only the winner writes
    the audit entry. The secret column becomes NULL: the ciphertext is gone, not flagged.
    """
    now = now or timezone.now()
    due = list(
        AccessKey.objects.filter(purge_at__lte=now, secret__isnull=False)
        .order_by("purge_at")
        .values_list("pk", flat=True)
    )
    purged = 0
    for pk in due:
        with transaction.atomic():
            won = AccessKey.objects.filter(pk=pk, secret__isnull=False, purge_at__lte=now).update(
                secret=None, purged_at=now
            )
            if not won:
                continue  # another sweep got there first
            key = AccessKey.objects.get(pk=pk)
            audit_record(
                action="access_key_purge",
                obj=key,
                actor=actor,
                detail={"purge_at": key.purge_at.isoformat(), "purged_at": now.isoformat()},
            )
        purged += 1
        logger.info("Purged access key %s (storage period elapsed).", key.access_key_id)
    return purged


@transaction.atomic
def access_key_update(*, access_key: AccessKey, description: str, actor: Actor = None) -> AccessKey:
    """Change what staff may change after entry: the description (never the secret)."""
    access_key.description = description
    access_key.full_clean(exclude=["secret"])  # validating must not load the secret
    access_key.save(update_fields=["description"])
    audit_record(
        action="access_key_update", obj=access_key, actor=actor, detail={"description": description}
    )
    return access_key


@transaction.atomic
def access_key_delete(*, access_key: AccessKey, actor: Actor = None) -> None:
    """Delete a key (secret and all) with an audit entry, e.g. to enter it again."""
    audit_record(
        action="access_key_delete",
        obj=access_key,
        actor=actor,
        detail={"stored": access_key.purged_at is None},
    )
    AccessKey.objects.filter(pk=access_key.pk).delete()
    logger.info("Deleted access key %s.", access_key.access_key_id)


@dataclass(frozen=True)
class CallerIdentity:
    """What ``sts:GetCallerIdentity`` says about an access key."""

    account: str
    arn: str
    user_id: str


def access_key_test(*, access_key: AccessKey, actor: Actor = None) -> CallerIdentity:
    """Ask AWS STS who the key belongs to; raises :class:`AwsError` with a sentence if not."""
    from botocore.exceptions import BotoCoreError, ClientError

    sts = aws_client("sts", access_key=access_key)
    try:
        answer = sts.get_caller_identity()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        raise AwsError(
            f"AWS refused access key {access_key.access_key_id} ({code}); check the id and "
            "secret, or enter the key again.",
            code=code,
        ) from None
    except BotoCoreError as exc:
        raise AwsError(
            f"AWS could not be reached to test access key {access_key.access_key_id} "
            f"({type(exc).__name__}).",
            code=type(exc).__name__,
        ) from None
    identity = CallerIdentity(
        account=str(answer.get("Account", "")),
        arn=str(answer.get("Arn", "")),
        user_id=str(answer.get("UserId", "")),
    )
    audit_record(
        action="access_key_test",
        obj=access_key,
        actor=actor,
        detail={"account": identity.account, "arn": identity.arn},
    )
    return identity


@transaction.atomic
def aws_service_update(
    *, enabled: bool | None = None, region: str | None = None, actor: Actor = None
) -> AwsService:
    """Change the current site's AWS settings (enabled switch, region) with an audit entry."""
    service = AwsService.objects.select_for_update().get(pk=aws_service_get().pk)
    changes: dict[str, object] = {}
    if enabled is not None and enabled != service.enabled:
        service.enabled = enabled
        changes["enabled"] = enabled
    if region is not None and region != service.region:
        service.region = region
        changes["region"] = region
    service.full_clean()
    if changes:
        service.save()
        audit_record(
            action="aws_service_update",
            obj=service,
            actor=actor,
            detail=changes,
        )
    return service


def aws_call_log_prune(*, now: datetime | None = None, days: int | None = None) -> int:
    """Delete call-log rows older than the retention (AWS_CALL_LOG_RETENTION_DAYS); count them.

    Deleting in bounded batches keeps the lock short when the log is large; running twice at
    once only means the second run finds less to delete.
    """
    now = now or timezone.now()
    days = settings.AWS_CALL_LOG_RETENTION_DAYS if days is None else days
    cutoff = now - timedelta(days=days)
    total = 0
    while True:
        batch = list(AwsApiCall.objects.filter(at__lt=cutoff).values_list("pk", flat=True)[:5000])
        if not batch:
            return total
        deleted, _ = AwsApiCall.objects.filter(pk__in=batch).delete()
        total += deleted
