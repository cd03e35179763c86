"""The periodic sweep of set-up jobs (JITP, claim) that a lost message or a dead worker left.

- A job still *queued* ``QUEUED_AFTER_SECONDS`` after its creation lost its task message
  (the broker was down at the start, or restarted empty): the task is sent again. The task
  takes the job with a conditional UPDATE (``job_start``), so a duplicate does nothing.
- A job *running* with no log line for ``SILENT_AFTER_SECONDS`` lost its worker (SIGKILL,
  OOM, a restarted host): every step logs when it begins and ends, and no step waits that
  long. JITP steps are idempotent (they read AWS's state before changing it), so the job
  is queued again; a claim set-up may have created a claim certificate half-way, so it is
  failed with a sentence that says to look and run it again.

Fleet installs are not swept here: ``fleet_advance`` starts and advances them. Safe to run
twice at once: each change is an UPDATE conditioned on the state the sweep saw.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from portal.handoff import send_task
from portal.models import AuditEvent

from .models import Job
from .services import job_finish, job_log

QUEUED_AFTER_SECONDS = 60
SILENT_AFTER_SECONDS = 600
SWEPT_KINDS = (Job.Kind.JITP_SETUP, Job.Kind.CLAIM_SETUP)


def jobs_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-send queued set-up jobs, requeue or fail running ones whose worker died."""
    now = now or timezone.now()
    counts = {"resent": 0, "requeued": 0, "failed": 0}
    queued = Job.objects.filter(
        kind__in=SWEPT_KINDS,
        status=Job.Status.QUEUED,
        created_at__lt=now - timedelta(seconds=QUEUED_AFTER_SECONDS),
    )
    for job in queued:
        if _resend(job):
            counts["resent"] += 1
    silent = (
        Job.objects.filter(kind__in=SWEPT_KINDS, status=Job.Status.RUNNING)
        .annotate(
            heartbeat=Greatest(
                Coalesce(Max("log_lines__at"), "started_at", "created_at"),
                Coalesce("started_at", "created_at"),
            )
        )
        .filter(heartbeat__lt=now - timedelta(seconds=SILENT_AFTER_SECONDS))
    )
    for job in silent:
        if job.kind == Job.Kind.JITP_SETUP:
            taken = Job.objects.filter(
                pk=job.pk, status=Job.Status.RUNNING, started_at=job.started_at
            ).update(status=Job.Status.QUEUED, started_at=None)
            if taken:
                job_log(
                    job=job,
                    level="warning",
                    message="The worker running this job stopped; the job was queued again "
                    "(its steps are safe to repeat).",
                )
                _resend(job)
                counts["requeued"] += 1
        else:
            job_finish(
                job=job,
                status=Job.Status.FAILED,
                error_code="WorkerLost",
                result="The worker running this job stopped before it finished; check the "
                "claim setup in AWS IoT and run the job again.",
            )
            counts["failed"] += 1
    return counts


def _resend(job: Job) -> bool:
    if job.kind == Job.Kind.JITP_SETUP:
        from ..jitp.tasks import jitp_setup

        return send_task(jitp_setup, job.pk)
    from ..claim.models import ClaimSetup
    from ..claim.tasks import claim_setup_task

    setup_id = ClaimSetup.objects.filter(job=job).values_list("pk", flat=True).first()
    if setup_id is None:
        return False
    return send_task(claim_setup_task, job.pk, setup_id, _new_claim_certificate(job))


def _new_claim_certificate(job: Job) -> bool:
    """The flag the claim set-up was started with (recorded in its audit event)."""
    detail: Any = (
        AuditEvent.objects.filter(action="claim_setup_start", detail__job=job.pk)
        .order_by("-pk")
        .values_list("detail", flat=True)
        .first()
    )
    return bool((detail or {}).get("new_claim_certificate"))
