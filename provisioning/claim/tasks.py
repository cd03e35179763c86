"""Celery task of the claim setup (the name stays ``provisioning.tasks.claim_setup_task``)."""

from __future__ import annotations

from celery import shared_task

from .services import claim_setup_run


@shared_task(name="provisioning.tasks.claim_setup_task", acks_late=True)
def claim_setup_task(job_id: int, setup_id: int, new_claim_certificate: bool = False) -> None:
    """Run a CLAIM_SETUP job (the service re-reads the rows and records every outcome)."""
    claim_setup_run(job_id=job_id, setup_id=setup_id, new_claim_certificate=new_claim_certificate)
