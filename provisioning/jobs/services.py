"""Services for background jobs: create, start, log, count progress, finish.

A job is a row first; its task re-reads it by id. Log lines are append-only and pass through
the same redaction as the AWS call log, as a last line of defence for secrets.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from portal.services import Actor, acting_user

from ..aws.redaction import redact_text
from .models import Job, JobLogLine


def job_create(
    *,
    kind: str,
    title: str,
    actor: Actor = None,
    total: int = 0,
) -> Job:
    user = acting_user(actor)
    job = Job(kind=kind, title=title, actor=user, progress_total=total)
    job.full_clean()
    job.save()
    return job


def job_start(*, job: Job) -> bool:
    """Mark a queued job running; False when another worker already took it or it was cancelled."""
    taken = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=timezone.now()
    )
    job.refresh_from_db()
    return bool(taken)


def job_log(*, job: Job, message: str, level: str = JobLogLine.Level.INFO) -> JobLogLine:
    return JobLogLine.objects.create(job=job, level=level, message=redact_text(message))


def job_log_many(
    *, job: Job, messages: Iterable[str], level: str = JobLogLine.Level.INFO
) -> list[JobLogLine]:
    """Several lines at once, in order, in one statement."""
    lines = [JobLogLine(job=job, level=level, message=redact_text(m)) for m in messages]
    return JobLogLine.objects.bulk_create(lines)


def job_progress(*, job: Job, done: int = 0, failed: int = 0, total: int | None = None) -> None:
    """Add to the done/failed counters atomically (several workers may report at once)."""
    updates: dict[str, object] = {
        "progress_done": F("progress_done") + done,
        "progress_failed": F("progress_failed") + failed,
    }
    if total is not None:
        updates["progress_total"] = total
    Job.objects.filter(pk=job.pk).update(**updates)
    job.refresh_from_db(fields=["progress_done", "progress_failed", "progress_total"])


def job_progress_set(*, job: Job, done: int, failed: int, total: int) -> None:
    """Set the counters to values counted elsewhere (a job whose progress is a query)."""
    Job.objects.filter(pk=job.pk).update(
        progress_done=done, progress_failed=failed, progress_total=total
    )
    job.progress_done, job.progress_failed, job.progress_total = done, failed, total


@transaction.atomic
def job_finish(*, job: Job, status: str, result: str, error_code: str = "") -> Job:
    if status not in Job.FINISHED:
        raise ValueError(f"{status!r} is not a finished job status.")
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.is_finished:
        return job
    job.status = status
    job.result = redact_text(result)[:500]
    job.error_code = error_code[:80]
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "result", "error_code", "finished_at"])
    level = JobLogLine.Level.INFO if status == Job.Status.SUCCEEDED else JobLogLine.Level.ERROR
    job_log(job=job, message=job.result, level=level)
    return job


def job_crash_sentence(exc: BaseException, *, work: str, again: str) -> str:
    """What a job that crashed on ``exc`` ends with: where to look, and how to go on."""
    return (
        f"The {work} stopped on an internal error ({type(exc).__name__}); see the worker log "
        f"and {again}."
    )


def job_cancel(*, job: Job) -> Job:
    return job_finish(job=job, status=Job.Status.CANCELLED, result="Cancelled by staff.")
