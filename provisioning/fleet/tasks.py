"""Celery tasks of fleet installs, routed to queue "fleet" by CELERY_TASK_ROUTES
(``provisioning.tasks.fleet_*``); the names stay ``provisioning.tasks.…``."""

from __future__ import annotations

from celery import shared_task

from . import services, sweep


@shared_task(name="provisioning.tasks.fleet_install_run")
def fleet_install_run(install_id: int) -> int:
    """Start a fleet install: place devices on online stations up to the concurrency cap."""
    return services.fleet_install_run(install_id=install_id)


@shared_task(name="provisioning.tasks.fleet_advance")
def fleet_advance() -> int:
    """Periodic: time out, follow onboarding requests, place waiting stations, finish jobs."""
    return sweep.fleet_advance()
