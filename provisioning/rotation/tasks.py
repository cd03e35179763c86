"""Celery tasks of CA rotation (names ``provisioning.tasks.<name>``): thin doors that re-read
the row by id; the new CA's password is read from the rotation row, never passed in."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from ..jobs.models import Job
from ..jobs.services import job_finish
from .models import CaRotation


class _JobTask(Task):
    """Marks the job (and its rotation) failed when the task itself dies."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        sentence = f"The task failed ({type(exc).__name__}); see the worker log and start it again."
        first = args[0] if args else (kwargs.get("rotation_id") or kwargs.get("job_id"))
        job_id = first
        if self.name.endswith("ca_rotation_register"):
            rotation = CaRotation.objects.filter(pk=first or 0).first()
            if rotation is None:
                return
            CaRotation.objects.filter(pk=rotation.pk, status__in=CaRotation.UNFINISHED).update(
                status=CaRotation.Status.FAILED, result=sentence, ca_password=""
            )
            job_id = rotation.job_id
        job = Job.objects.filter(pk=job_id or 0).first()
        if job is not None and not job.is_finished:
            job_finish(job=job, status=Job.Status.FAILED, error_code="TaskFailed", result=sentence)


@shared_task(base=_JobTask, name="provisioning.tasks.ca_rotation_register", acks_late=True)
def ca_rotation_register(rotation_id: int) -> None:
    """Phase 1 of rotation ``rotation_id``: the new CA in AWS, the profiles switched."""
    from .services import ca_rotation_register as register

    rotation = (
        CaRotation.objects.select_related("from_ca", "to_ca", "job").filter(pk=rotation_id).first()
    )
    if rotation is None or rotation.job.status != Job.Status.QUEUED:
        return  # already taken or gone: re-delivery is harmless
    register(rotation=rotation)


@shared_task(name="provisioning.tasks.ca_rotations_advance")
def ca_rotations_advance() -> int:
    """Periodic: one step of every running rotation's wave (safe to run twice at once)."""
    from .wave import ca_rotations_advance as advance

    return advance()


@shared_task(base=_JobTask, name="provisioning.tasks.ca_retire", acks_late=True)
def ca_retire(job_id: int) -> None:
    """Retire the CA of job ``job_id``: INACTIVE in AWS, then archived."""
    from .retire import ca_retire_run

    job = Job.objects.filter(pk=job_id, kind=Job.Kind.CA_RETIRE).first()
    if job is None or job.status != Job.Status.QUEUED:
        return
    ca_retire_run(job=job)
