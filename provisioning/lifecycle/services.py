"""Writes of the AWS action outbox: enqueue, retry. Carrying actions out is ``runner``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from portal.handoff import send_task_on_commit
from portal.services import Actor, acting_user
from signing.models import IssuedCertificate

from .models import AwsAction

Kind = AwsAction.Kind
Status = AwsAction.Status


@dataclass(frozen=True)
class Change:
    """One intended change in AWS: a kind and its target."""

    kind: str
    certificate: IssuedCertificate | None = None
    aws_certificate_id: str = ""
    thing_name: str = ""
    group_name: str = ""
    not_before: datetime | None = None


def _label(actor: Actor, actor_label: str) -> str:
    user = acting_user(actor)
    return actor_label or (user.get_username() if user else "system")


@transaction.atomic
def aws_actions_enqueue(
    *,
    changes: Iterable[Change],
    reason: str = "",
    actor: Actor = None,
    actor_label: str = "",
) -> list[AwsAction]:
    """Record ``changes`` as outbox rows and wake a runner once the transaction commits.

    Idempotent: a change whose kind and target already have an open (pending or running)
    action is not recorded twice; that open action is returned instead.
    """
    label = _label(actor, actor_label)
    now = timezone.now()
    rows: list[AwsAction] = []
    for change in changes:
        cert_id = change.aws_certificate_id or (
            change.certificate.aws_certificate_id if change.certificate else ""
        )
        target = {
            "kind": change.kind,
            "aws_certificate_id": cert_id,
            "thing_name": change.thing_name,
            "group_name": change.group_name,
        }
        open_row = AwsAction.objects.filter(
            status__in=[Status.PENDING, Status.RUNNING], **target
        ).first()
        if open_row is not None:
            rows.append(open_row)
            continue
        row = AwsAction(
            **target,
            certificate=change.certificate,
            reason=reason[:200],
            requested_by=label[:150],
            not_before=change.not_before or now,
        )
        row.full_clean(validate_constraints=False)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError:  # a concurrent enqueue of the same change won
            row = AwsAction.objects.get(status__in=[Status.PENDING, Status.RUNNING], **target)
        rows.append(row)
    if rows:
        from . import tasks  # the task module imports this one; a module-level import cycles

        send_task_on_commit(tasks.aws_actions_run)
    return rows


@transaction.atomic
def aws_actions_retry(*, ids: Iterable[int], actor: Actor = None) -> int:
    """Put failed actions back in the queue, due now, with a fresh attempt count."""
    count = AwsAction.objects.filter(pk__in=list(ids), status=Status.FAILED).update(
        status=Status.PENDING,
        attempts=0,
        not_before=timezone.now(),
        finished_at=None,
    )
    if count:
        from . import tasks

        send_task_on_commit(tasks.aws_actions_run)
    return count


def aws_actions_open_for(*, certificate: IssuedCertificate) -> bool:
    """Whether AWS still has a change of this certificate to make."""
    return AwsAction.objects.filter(
        Q(certificate=certificate) | Q(aws_certificate_id=certificate.aws_certificate_id),
        status__in=[Status.PENDING, Status.RUNNING],
    ).exists()
