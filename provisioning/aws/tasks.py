"""Celery tasks of the AWS concern (beat): purge expired access keys, prune the call log.

Task names are fixed (``provisioning.tasks.…``): beat schedules and queued messages use them.
"""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="provisioning.tasks.purge_access_keys", acks_late=True, ignore_result=True)
def purge_access_keys() -> int:
    """Beat, every minute: purge keys whose storage period has elapsed.

    ``acks_late``: the sweep is idempotent (conditional UPDATE per key), so redelivery after a
    worker crash is harmless and a crash never loses a purge.
    """
    return services.access_key_purge_due()


@shared_task(name="provisioning.tasks.prune_aws_call_log", acks_late=True, ignore_result=True)
def prune_aws_call_log() -> int:
    """Beat, hourly: delete AWS call-log rows older than the retention period (idempotent)."""
    return services.aws_call_log_prune()
