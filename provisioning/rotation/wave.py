"""The renewal wave of a CA rotation: paced "renew now" requests, their outcomes, the failure
threshold that pauses it, and its end (the old CA's retirement).

:func:`ca_rotation_advance` is one step of the wave; the periodic task runs it for every
running rotation, ``rotate_ca --wait`` runs it too. It is safe to run twice at once: the
rotation row is locked for the step (SQLite: the IMMEDIATE transaction serialises them).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from portal.handoff import send_task
from portal.services import Actor, audit_record
from signing.models import IssuedCertificate, OnboardingRequest
from signing.services import ca_active_certificates, certificates_renew_now

from ..jobs.models import Job, JobLogLine
from ..jobs.services import job_finish, job_log, job_progress_set
from .errors import RotationNotInState
from .models import CaRetirement, CaRotation, CaRotationItem

State = CaRotationItem.State
ACTIVE = IssuedCertificate.Status.ACTIVE
_LOGGED_FAILURES_PER_STEP = 20


def ca_rotation_advance(*, rotation: CaRotation, now: datetime | None = None) -> CaRotation:
    """One step: settle what devices did, pause on too many failures, ask the next devices
    (as many as the pace allows), or retire the old CA once none is left under it."""
    with transaction.atomic():
        row = (
            CaRotation.objects.select_for_update(skip_locked=True)
            .select_related("from_ca", "to_ca", "job")
            .filter(pk=rotation.pk, status=CaRotation.Status.RUNNING)
            .first()
        )
        if row is not None:
            now = now or timezone.now()
            if row.phase == CaRotation.Phase.WAVE:
                _wave_step(row, now)
            elif row.phase == CaRotation.Phase.RETIRE:
                _retire_step(row, now)
    rotation.refresh_from_db()
    return rotation


def _wave_step(rotation: CaRotation, now: datetime) -> None:
    _settle(rotation, now)
    failed = rotation.items.filter(state=State.FAILED).count()
    if failed >= rotation.failure_threshold:
        CaRotation.objects.filter(pk=rotation.pk).update(
            status=CaRotation.Status.PAUSED, paused_at=now
        )
        job_log(
            job=rotation.job,
            level=JobLogLine.Level.WARNING,
            message=f"Paused: {failed} device{'' if failed == 1 else 's'} failed to renew "
            f"(threshold {rotation.failure_threshold}). Fix what the lines above say, then "
            "resume the rotation; the failed devices are asked again.",
        )
        _progress(rotation)
        return
    remaining = ca_active_certificates(ca=rotation.from_ca)
    if not remaining.exists():
        _progress(rotation)
        job_log(
            job=rotation.job,
            message=f"No active certificate is left under CA '{rotation.from_ca.alias}'; "
            "retiring it.",
        )
        _retire(rotation, force=False, actor=None)
        return
    _ask_next(rotation, now)
    _progress(rotation)


def _settle(rotation: CaRotation, now: datetime) -> None:
    """Renewed: the asked certificate is no longer active (superseded by the renewal, or
    revoked). Failed: the device's renewal after the ask failed or was rejected, or it has
    not renewed within the timeout."""
    items = rotation.items.filter(state__in=[State.ASKED, State.FAILED])
    items.exclude(certificate__status=ACTIVE).update(state=State.RENEWED, settled_at=now)
    asked = list(
        rotation.items.filter(state=State.ASKED).values_list(
            "pk", "certificate__device_id", "asked_at", "certificate__common_name"
        )
    )
    if not asked:
        return
    earliest = min(a for _, _, a, _ in asked)
    latest: dict[int, tuple[datetime, str, str]] = {}
    for device_id, created, status, reason in (
        OnboardingRequest.objects.filter(
            device_id__in={d for _, d, _, _ in asked}, is_renewal=True, created_at__gte=earliest
        )
        .order_by("created_at", "pk")
        .values_list("device_id", "created_at", "status", "reason")
    ):
        latest[device_id] = (created, status, reason)
    deadline = now - timedelta(minutes=rotation.renew_timeout_minutes)
    failures: list[tuple[int, str, str]] = []
    for pk, device_id, asked_at, cn in asked:
        request = latest.get(device_id)
        if (
            request is not None
            and request[0] >= asked_at
            and request[1] in (OnboardingRequest.Status.FAILED, OnboardingRequest.Status.REJECTED)
        ):
            failures.append((pk, cn, f"its renewal request was {request[1]}: {request[2]}"))
        elif asked_at < deadline:
            failures.append(
                (pk, cn, f"it has not renewed within {rotation.renew_timeout_minutes} minutes")
            )
    for pk, _cn, reason in failures:
        CaRotationItem.objects.filter(pk=pk, state=State.ASKED).update(
            state=State.FAILED, settled_at=now, reason=reason[:500]
        )
    for _, cn, reason in failures[:_LOGGED_FAILURES_PER_STEP]:
        job_log(
            job=rotation.job,
            level=JobLogLine.Level.WARNING,
            message=f"Device {cn} failed to renew: {reason}.",
        )
    if len(failures) > _LOGGED_FAILURES_PER_STEP:
        job_log(
            job=rotation.job,
            level=JobLogLine.Level.WARNING,
            message=f"… and {len(failures) - _LOGGED_FAILURES_PER_STEP} more devices failed.",
        )


def pace_budget(*, rate_per_minute: int, since: datetime, now: datetime, asked: int) -> int:
    """How many devices may be asked now: ``rate_per_minute`` over the window since
    ``since`` (the first one at once), minus those already asked in it."""
    elapsed = max(0.0, (now - since).total_seconds())
    return max(0, int(rate_per_minute * elapsed / 60) + 1 - asked)


def _ask_next(rotation: CaRotation, now: datetime) -> None:
    assert rotation.wave_started_at is not None
    budget = pace_budget(
        rate_per_minute=rotation.rate_per_minute,
        since=rotation.wave_started_at,
        now=now,
        asked=rotation.marked_in_window,
    )
    if budget <= 0:
        return
    ids = list(
        ca_active_certificates(ca=rotation.from_ca)
        .exclude(pk__in=rotation.items.values("certificate_id"))
        .order_by("pk")
        .values_list("pk", flat=True)[:budget]
    )
    if not ids:
        return
    CaRotationItem.objects.bulk_create(
        [CaRotationItem(rotation=rotation, certificate_id=pk, asked_at=now) for pk in ids]
    )
    certificates_renew_now(ids=ids, actor_label="CA rotation")
    CaRotation.objects.filter(pk=rotation.pk).update(
        marked_in_window=rotation.marked_in_window + len(ids)
    )
    asked = rotation.items.count()
    job_log(
        job=rotation.job,
        message=f"Asked {len(ids)} device{'' if len(ids) == 1 else 's'} to renew now "
        f"({asked} asked so far).",
    )


def _progress(rotation: CaRotation) -> None:
    """Job counters: renewed (done) and failed items out of every certificate of the old
    CA the wave has seen (asked ones plus those still waiting)."""
    counts = {State.RENEWED: 0, State.FAILED: 0, State.ASKED: 0}
    for state in rotation.items.values_list("state", flat=True):
        counts[State(state)] += 1
    waiting = (
        ca_active_certificates(ca=rotation.from_ca)
        .exclude(pk__in=rotation.items.values("certificate_id"))
        .count()
    )
    job_progress_set(
        job=rotation.job,
        done=counts[State.RENEWED],
        failed=counts[State.FAILED],
        total=sum(counts.values()) + waiting,
    )


def _retire(rotation: CaRotation, *, force: bool, actor: Actor) -> None:
    from .retire import ca_retire_start

    ca_retire_start(ca=rotation.from_ca, force=force, actor=actor, rotation=rotation)


def _retire_step(rotation: CaRotation, now: datetime) -> None:
    """The old CA's retirement job decides how the rotation ends."""
    retirement = (
        CaRetirement.objects.select_related("job").filter(rotation=rotation).order_by("-pk").first()
    )
    if retirement is None or not retirement.job.is_finished:
        return
    job = retirement.job
    if job.status == Job.Status.SUCCEEDED:
        result = (
            f"Rotation done: devices moved from CA '{rotation.from_ca.alias}' to "
            f"'{rotation.to_ca.alias}'; the old CA is INACTIVE in AWS and archived."
        )
        status = CaRotation.Status.DONE
    else:
        result = f"The old CA's retirement failed: {job.result}"
        status = CaRotation.Status.FAILED
    CaRotation.objects.filter(pk=rotation.pk).update(
        status=status, phase=CaRotation.Phase.FINISHED, finished_at=now, result=result[:500]
    )
    job_finish(
        job=rotation.job,
        status=Job.Status.SUCCEEDED if status == CaRotation.Status.DONE else Job.Status.FAILED,
        result=result,
        error_code="" if status == CaRotation.Status.DONE else (job.error_code or "RetireFailed"),
    )


@transaction.atomic
def ca_rotation_pause(*, rotation: CaRotation, actor: Actor = None) -> CaRotation:
    """Stop asking devices (those asked already may still renew)."""
    done = CaRotation.objects.filter(
        pk=rotation.pk,
        status__in=CaRotation.statuses_before(CaRotation.Status.PAUSED),
        phase=CaRotation.Phase.WAVE,
    ).update(status=CaRotation.Status.PAUSED, paused_at=timezone.now())
    if not done:
        raise RotationNotInState(f"{rotation} is not in its renewal wave; nothing to pause.")
    job_log(job=rotation.job, message="Paused by staff.")
    audit_record(action="ca_rotation_pause", obj=rotation, actor=actor)
    rotation.refresh_from_db()
    return rotation


@transaction.atomic
def ca_rotation_resume(
    *, rotation: CaRotation, actor: Actor = None, rate_per_minute: int | None = None
) -> CaRotation:
    """Run a paused wave again: the failed devices are asked again and the pace restarts."""
    row = CaRotation.objects.select_for_update().get(pk=rotation.pk)
    if row.status != CaRotation.Status.PAUSED:
        raise RotationNotInState(f"{row} is {row.get_status_display().lower()}, not paused.")
    now = timezone.now()
    failed = list(row.items.filter(state=State.FAILED).values_list("certificate_id", flat=True))
    row.items.filter(state=State.FAILED).update(
        state=State.ASKED, asked_at=now, settled_at=None, reason=""
    )
    certificates_renew_now(ids=failed, actor_label="CA rotation")
    row.status = CaRotation.Status.RUNNING
    row.paused_at = None
    row.wave_started_at = now
    row.marked_in_window = 0
    if rate_per_minute is not None:
        row.rate_per_minute = rate_per_minute
    row.full_clean()
    row.save(
        update_fields=[
            "status",
            "paused_at",
            "wave_started_at",
            "marked_in_window",
            "rate_per_minute",
        ]
    )
    job_log(
        job=row.job,
        message=f"Resumed by staff at {row.rate_per_minute} devices per minute; "
        f"{len(failed)} failed device{'' if len(failed) == 1 else 's'} asked again.",
    )
    audit_record(
        action="ca_rotation_resume", obj=row, actor=actor, detail={"asked_again": len(failed)}
    )
    return row


def ca_rotations_advance(*, stale_after_seconds: int = 120) -> int:
    """Advance every running rotation (the periodic task); returns how many were stepped.

    A rotation whose registration was handed to a worker that never took it (broker down,
    worker killed before it started) is handed out again once it is ``stale_after_seconds``
    old; the task takes it only while its job is still queued.
    """
    from . import tasks

    stale = timezone.now() - timedelta(seconds=stale_after_seconds)
    for rotation_id in CaRotation.objects.filter(
        status=CaRotation.Status.RUNNING,
        phase=CaRotation.Phase.REGISTER,
        job__status=Job.Status.QUEUED,
        created_at__lt=stale,
    ).values_list("pk", flat=True):
        send_task(tasks.ca_rotation_register, rotation_id)
    count = 0
    for rotation in CaRotation.objects.filter(status=CaRotation.Status.RUNNING).exclude(
        phase=CaRotation.Phase.REGISTER
    ):
        ca_rotation_advance(rotation=rotation)
        count += 1
    return count
