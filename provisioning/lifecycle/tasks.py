"""Celery task of the AWS action outbox (names fixed: beat and queued messages use them)."""

from __future__ import annotations

from celery import shared_task

from . import runner


@shared_task(name="provisioning.tasks.aws_actions_run", acks_late=True, ignore_result=True)
def aws_actions_run() -> int:
    """Carry out due AWS actions. Sent after every enqueue and by beat (the sweeper that
    picks up what a lost message or a dead worker left behind); safe to run twice at once."""
    return runner.aws_actions_run().done
