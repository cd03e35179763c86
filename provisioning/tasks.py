"""Celery tasks of the provisioning app: thin doors into the services."""


# === Fleet install tasks (fleet helper); routed to queue "fleet" by CELERY_TASK_ROUTES ========
from celery import shared_task  # noqa: E402


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
