"""Celery task of the set-up jobs' sweep (the name stays ``provisioning.tasks.sweep_jobs``)."""

from __future__ import annotations

from celery import shared_task

from .sweep import jobs_sweep


@shared_task(name="provisioning.tasks.sweep_jobs")
def sweep_jobs() -> dict[str, int]:
    """Periodic: re-send queued set-up jobs; requeue or fail those whose worker died."""
    return jobs_sweep()
