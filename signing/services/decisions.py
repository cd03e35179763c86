"""Staff's decisions on onboarding requests (approve, reject), the hand-off of approved ones
to signing in batches, the sweeper that re-sends what a killed worker or a lost message
dropped, and the failure a task that gave up records.

Signing is handed to :mod:`signing.tasks`, whose tasks call back into these services: both
import the other as a module (``from .. import tasks``), so either may be imported first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.handoff import send_task
from portal.models import AuditEvent
from portal.services import Actor

from .. import tasks
from ..models import OnboardingRequest
from ..sql import insert_rows, update_returning_ids

Status = OnboardingRequest.Status

BATCH_SIZE = 200


def _ids_that_may_become(target: str, ids: Iterable[int] | None) -> list[int]:
    qs = OnboardingRequest.objects.filter(status__in=OnboardingRequest.statuses_before(target))
    if ids is not None:
        qs = qs.filter(pk__in=list(ids))
    return list(qs.order_by("pk").values_list("pk", flat=True))


@transaction.atomic
def onboarding_requests_approve(
    *, ids: Iterable[int] | None, actor: Actor = None, actor_label: str = ""
) -> list[int]:
    """Approve pending requests (``ids=None``: all pending); returns the approved ids.

    One ``UPDATE … WHERE status = 'pending' RETURNING id`` per 1,000 ids (the statement
    locks and re-checks each row, so a concurrent reject cannot be overwritten), one audit
    row per request in one INSERT per chunk, and signing enqueued in batches once the
    transaction commits.
    """
    now = timezone.now()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    changes = {
        "status": Status.APPROVED,
        "decided_at": now,
        "decided_by_id": user.pk if user else None,
        "decided_by_label": label,
        "sign_enqueued_at": now,
    }
    pending = {"status": OnboardingRequest.statuses_before(Status.APPROVED)}
    approved: list[int] = []
    if ids is None:
        approved = update_returning_ids(OnboardingRequest, ids=None, where=pending, values=changes)
    else:
        for chunk in _chunks(sorted(set(ids)), 1000):
            approved.extend(
                update_returning_ids(OnboardingRequest, ids=chunk, where=pending, values=changes)
            )
    audit_bulk("onboarding_approve", approved, user=user, label=label, at=now)
    signing_enqueue(approved)
    return approved


@transaction.atomic
def onboarding_requests_reject(
    *, ids: Iterable[int], reason: str, actor: Actor = None, actor_label: str = ""
) -> list[int]:
    """Reject pending requests with a reason the station will see; returns the rejected ids."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason; the station's operator will see it."})
    if len(reason) > 500:
        raise ValidationError({"reason": "The reason is longer than 500 characters."})
    now = timezone.now()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    rejected: list[int] = []
    sources = OnboardingRequest.statuses_before(Status.REJECTED)
    for chunk in _chunks(_ids_that_may_become(Status.REJECTED, ids), 1000):
        locked = list(
            OnboardingRequest.objects.select_for_update()
            .filter(pk__in=chunk, status__in=sources)
            .values_list("pk", flat=True)
        )
        OnboardingRequest.objects.filter(pk__in=locked, status__in=sources).update(
            status=Status.REJECTED,
            decided_at=now,
            decided_by=user,
            decided_by_label=label,
            reason=reason,
        )
        rejected.extend(locked)
    audit_bulk("onboarding_reject", rejected, user=user, label=label, detail={"reason": reason})
    return rejected


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def audit_bulk(
    action: str,
    ids: Sequence[int],
    *,
    user: Any,
    label: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """One audit row per request, one INSERT per 1,000 rows (rows are append-only either way)."""
    if not ids:
        return
    constants = {
        "at": at or timezone.now(),
        "action": action,
        "actor_id": user.pk if user else None,
        "actor_label": label,
        "object_type": "signing.onboardingrequest",
        "detail": detail or {},
    }
    for chunk in _chunks(ids, 1000):
        insert_rows(
            AuditEvent,
            columns=("object_id", "object_repr"),
            rows=[(str(pk), f"#{pk}") for pk in chunk],
            constants=constants,
        )


def signing_enqueue(ids: Sequence[int]) -> None:
    """Hand the ids to the signing queue in batches, after the transaction commits."""
    if not ids:
        return
    batches = list(_chunks(list(ids), BATCH_SIZE))

    def send() -> None:
        for batch in batches:
            if not send_task(tasks.sign_batch, batch):
                return  # the broker is down: the rest would fail too; the sweeper sends them

    transaction.on_commit(send)


# Approved requests handed to signing longer ago than this and still approved are handed
# out again: a killed worker lost the batch, or the broker was down (or restarted empty)
# when they were approved. A batch takes well under a second, so 30 s only re-sends work
# that is really lost (a duplicate finds its rows no longer approved and skips them).
SWEEP_AFTER_SECONDS = 30


@transaction.atomic
def onboarding_requests_sweep(*, older_than_seconds: int = SWEEP_AFTER_SECONDS) -> int:
    """Re-enqueue approved requests whose signing was handed out long ago and never finished.

    A killed worker loses its batch, a broker outage loses the message; this puts it back.
    Safe to run twice at once: the rows are locked (skipping rows another sweep holds) and
    their ``sign_enqueued_at`` moves forward in the same transaction.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    stale = OnboardingRequest.objects.filter(status=Status.APPROVED).filter(
        Q(sign_enqueued_at__lt=cutoff) | Q(sign_enqueued_at__isnull=True)
    )
    ids = list(
        stale.select_for_update(skip_locked=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:20000]
    )
    for chunk in _chunks(ids, 1000):
        OnboardingRequest.objects.filter(pk__in=chunk).update(sign_enqueued_at=now)
    signing_enqueue(ids)
    return len(ids)


def onboarding_requests_fail(*, ids: Sequence[int], reason: str) -> int:
    """Mark still-approved requests failed (a task that gave up); returns how many."""
    return OnboardingRequest.objects.filter(
        pk__in=list(ids),
        status__in=OnboardingRequest.statuses_before(Status.FAILED),
    ).update(status=Status.FAILED, reason=reason[:500])
