"""Celery tasks of the signing service: thin doors into the services (queue ``signing``).

Tasks take ids, re-read the rows and re-check their state in the service; the CA password
never travels through the broker (the worker reads it from the profile). The services
enqueue these tasks and these tasks call the services: each imports the other as a module,
so either may be imported first.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.db import DatabaseError, InterfaceError

from . import services

logger = logging.getLogger(__name__)


class _SignBatchTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Retries exhausted or an unexpected error: the batch's requests fail with a sentence."""
        ids = args[0] if args else kwargs.get("ids", [])
        services.onboarding_requests_fail(
            ids=ids, reason="Signing failed on the worker; see the worker log, then approve again."
        )


@shared_task(
    base=_SignBatchTask,
    bind=True,
    name="signing.tasks.sign_batch",
    autoretry_for=(DatabaseError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def sign_batch(self: Task, ids: list[int]) -> dict[str, int]:
    """Sign the approved requests among ``ids`` (one transaction per batch)."""
    logger.info("signing batch of %d requests started", len(ids))
    result = services.onboarding_requests_sign(ids=[int(i) for i in ids])
    logger.info(
        "signing batch done: %d issued, %d failed, %d skipped",
        result.issued,
        result.failed,
        result.skipped,
    )
    return {"issued": result.issued, "failed": result.failed, "skipped": result.skipped}


@shared_task(name="signing.tasks.sweep_approved_requests")
def sweep_approved_requests(older_than_seconds: int | None = None) -> int:
    """Periodic: re-enqueue approved requests a lost message or a killed worker left unsigned
    (those handed out more than ``older_than_seconds`` ago, default SWEEP_AFTER_SECONDS)."""
    if older_than_seconds is None:
        return services.onboarding_requests_sweep()
    return services.onboarding_requests_sweep(older_than_seconds=older_than_seconds)


@shared_task(name="signing.tasks.check_renewals")
def check_renewals() -> dict[str, Any]:
    """Periodic: mark certificates due for renewal; log CA-expiry warnings."""
    result = services.renewals_check()
    for warning in result.warnings:
        logger.warning("%s", warning)
    return {"marked_due": result.marked_due, "warnings": result.warnings}
