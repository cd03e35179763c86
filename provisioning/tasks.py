"""Celery tasks of the provisioning app: thin doors into the services."""


# --- fleet provisioning by claim (issue 7) -----------------------------------------------------
from celery import shared_task  # noqa: E402


@shared_task(name="provisioning.tasks.claim_setup_task", acks_late=True)
def claim_setup_task(job_id: int, setup_id: int, new_claim_certificate: bool = False) -> None:
    """Run a CLAIM_SETUP job (the service re-reads the rows and records every outcome)."""
    from .claim import claim_setup_run

    claim_setup_run(job_id=job_id, setup_id=setup_id, new_claim_certificate=new_claim_certificate)
# --- end fleet provisioning by claim -----------------------------------------------------------
