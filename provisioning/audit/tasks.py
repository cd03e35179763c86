"""Celery task of the fleet audit (name fixed: beat uses it)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="provisioning.tasks.fleet_audit", ignore_result=True)
def fleet_audit() -> int | None:
    """The scheduled audit (daily by default). Safe to run twice at once: the second one
    finds the first one running and does nothing."""
    try:
        run = services.fleet_audit_run(actor_label="scheduled audit")
    except services.AuditRunning:
        return None
    return run.pk
