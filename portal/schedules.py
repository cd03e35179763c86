"""Periodic tasks, defined in code and installed into django-celery-beat idempotently.

Each entry: (name shown in the admin, dotted task path, interval in seconds). Every periodic
task must be safe to run twice at once.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections

# The admin index reads this entry's last run to tell whether beat is alive.
HEARTBEAT_TASK_NAME = "Heartbeat: proves beat, the broker and a worker are alive"

PERIODIC_TASKS: list[tuple[str, str, int]] = [
    (
        "Purge access keys whose storage period has elapsed",
        "provisioning.tasks.purge_access_keys",
        60,
    ),
    ("Prune the AWS API call log", "provisioning.tasks.prune_aws_call_log", 3600),
    (HEARTBEAT_TASK_NAME, "portal.tasks.heartbeat", 60),
    (
        "Carry out due AWS actions (and pick up what a dead worker left)",
        "provisioning.tasks.aws_actions_run",
        15,
    ),
    ("Advance fleet installs", "provisioning.tasks.fleet_advance", 30),
    ("Mark certificates due for renewal; CA-expiry warnings", "signing.tasks.check_renewals", 3600),
    (
        "Re-enqueue approved onboarding requests left unsigned",
        "signing.tasks.sweep_approved_requests",
        60,
    ),
]


def install_periodic_tasks(*, using: str = DEFAULT_DB_ALIAS) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    if "django_celery_beat_periodictask" not in connections[using].introspection.table_names():
        return
    for name, task, seconds in PERIODIC_TASKS:
        schedule, _ = IntervalSchedule.objects.using(using).get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.using(using).update_or_create(
            name=name, defaults={"task": task, "interval": schedule, "enabled": True}
        )
