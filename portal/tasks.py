"""Celery tasks of the portal itself: the heartbeat that proves beat and a worker are alive."""

from __future__ import annotations

from celery import shared_task

from .services import heartbeat_record


@shared_task(ignore_result=True, expires=120)
def heartbeat() -> None:
    """Beat sends this every minute; the worker that runs it stamps the time.

    The admin index warns when the stamp is old (no worker answering, beat stopped, or the
    broker unreachable). ``expires`` drops stale heartbeats queued while no worker ran, so a
    returning worker does not pretend the past minutes were fine.
    """
    heartbeat_record(name="worker")
