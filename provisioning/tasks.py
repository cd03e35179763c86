"""Celery tasks of the provisioning app: thin doors into the services."""
from __future__ import annotations

from celery import Task, shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def purge_access_keys() -> int:
    """Beat, every minute: purge keys whose storage period has elapsed.

    ``acks_late``: the sweep is idempotent (conditional UPDATE per key), so redelivery after a
    worker crash is harmless and a crash never loses a purge.
    """
    return services.access_key_purge_due()


@shared_task(acks_late=True, ignore_result=True)
def prune_aws_call_log() -> int:
    """Beat, hourly: delete AWS call-log rows older than the retention period (idempotent)."""
    return services.aws_call_log_prune()


# --- JITP setup (issue 3) ------------------------------------------------------------
class _JitpTask(Task):
    """Marks the job failed when the task itself dies (the service catches AWS errors)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: ANN001, ANN201
        from .jobs import job_finish
        from .models import Job

        job = Job.objects.filter(pk=(args or [kwargs.get("job_id")])[0]).first()
        if job is not None and not job.is_finished:
            job_finish(job=job, status=Job.Status.FAILED, error_code="TaskFailed",
                       result=f"The JITP task failed ({type(exc).__name__}); see the worker "
                              "log and run the job again.")


@shared_task(base=_JitpTask, name="provisioning.tasks.jitp_setup", acks_late=True)
def jitp_setup(job_id: int) -> None:
    """Run the JITP setup job ``job_id``; the worker reads the CA password from the settings."""
    from .jitp import jitp_setup_run
    from .models import Job

    job = Job.objects.filter(pk=job_id, kind=Job.Kind.JITP_SETUP).first()
    if job is None or job.status != Job.Status.QUEUED:
        return  # already taken, cancelled or gone: re-delivery is harmless
    jitp_setup_run(job=job)


# === Fleet install tasks (fleet helper); routed to queue "fleet" by CELERY_TASK_ROUTES ========


@shared_task(name="provisioning.tasks.fleet_install_run")
def fleet_install_run(install_id: int) -> int:
    """Start a fleet install: place devices on online stations up to the concurrency cap."""
    from .fleet import fleet_install_run as run

    return run(install_id=install_id)


@shared_task(name="provisioning.tasks.fleet_advance")
def fleet_advance() -> int:
    """Periodic: time out, follow onboarding requests, place waiting stations, finish jobs."""
    from .fleet import fleet_advance as advance

    return advance()
# === end of fleet install tasks ===============================================================


# --- fleet provisioning by claim (issue 7) -----------------------------------------------------


@shared_task(name="provisioning.tasks.claim_setup_task", acks_late=True)
def claim_setup_task(job_id: int, setup_id: int, new_claim_certificate: bool = False) -> None:
    """Run a CLAIM_SETUP job (the service re-reads the rows and records every outcome)."""
    from .claim import claim_setup_run

    claim_setup_run(job_id=job_id, setup_id=setup_id, new_claim_certificate=new_claim_certificate)
# --- end fleet provisioning by claim -----------------------------------------------------------
