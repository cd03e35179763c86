"""Periodic tasks, defined in code and installed into django-celery-beat idempotently.

Each entry: (name shown in the admin, dotted task path, interval in seconds). Every periodic
task must be safe to run twice at once.

The sweepers re-send row-first work that a lost message (broker down or restarted empty) or
a dead worker left behind. "One sweep period" is a sweeper's interval plus its age threshold:
the longest a recorded piece of work waits once the broker and a worker are back.

- approved onboarding requests: every 30 s, those handed out > 30 s ago (60 s);
- fleet installs (fleet_advance): every 30 s, installs queued > 30 s ago are started (60 s);
- AWS actions (aws_actions_run): every 15 s, due pending actions are carried out (a lost
  hand-off waits 15 s); running ones older than AWS_ACTION_STALE_SECONDS (300) go back to
  pending (a dead worker: 315 s);
- JITP / claim set-up jobs: every 60 s, queued > 60 s ago are re-sent (120 s); running ones
  with no log line for 600 s are requeued (JITP) or failed with a sentence (claim).
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
    (
        "Fleet audit: the portal's certificates against AWS IoT",
        "provisioning.tasks.fleet_audit",
        86400,
    ),
    ("Advance fleet installs", "provisioning.tasks.fleet_advance", 30),
    ("Advance CA rotation waves", "provisioning.tasks.ca_rotations_advance", 10),
    ("Mark certificates due for renewal; CA-expiry warnings", "signing.tasks.check_renewals", 3600),
    (
        "Re-enqueue approved onboarding requests left unsigned",
        "signing.tasks.sweep_approved_requests",
        30,
    ),
    (
        "Re-send set-up jobs a lost message or a dead worker left",
        "provisioning.tasks.sweep_jobs",
        60,
    ),
    (
        "Evaluate alert conditions; notify alert channels",
        "portal.cockpit.tasks.alerts_evaluate",
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
        # ``enabled`` only on creation: what staff switched off in the admin stays off.
        PeriodicTask.objects.using(using).update_or_create(
            name=name,
            defaults={"task": task, "interval": schedule},
            create_defaults={"task": task, "interval": schedule, "enabled": True},
        )
