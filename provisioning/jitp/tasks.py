"""Celery task of the JITP setup (the name stays ``provisioning.tasks.jitp_setup``)."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from ..jobs.models import Job
from ..jobs.services import job_finish
from .services import jitp_setup_run


class _JitpTask(Task):
    """Marks the job failed when the task itself dies (the service catches AWS errors)."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job = Job.objects.filter(pk=(args or [kwargs.get("job_id")])[0]).first()
        if job is not None and not job.is_finished:
            job_finish(
                job=job,
                status=Job.Status.FAILED,
                error_code="TaskFailed",
                result=f"The JITP task failed ({type(exc).__name__}); see the worker "
                "log and run the job again.",
            )


@shared_task(base=_JitpTask, name="provisioning.tasks.jitp_setup", acks_late=True)
def jitp_setup(job_id: int) -> None:
    """Run the JITP setup job ``job_id``; the worker reads the CA password from the settings."""
    job = Job.objects.filter(pk=job_id, kind=Job.Kind.JITP_SETUP).first()
    if job is None or job.status != Job.Status.QUEUED:
        return  # already taken, cancelled or gone: re-delivery is harmless
    jitp_setup_run(job=job)
