"""Celery tasks of the cockpit: the periodic alert evaluation and one message's delivery."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from portal.models import AlertChannel

from .delivery import AlertDeliveryFailed, alert_send


@shared_task(name="portal.cockpit.tasks.alerts_evaluate", ignore_result=True, expires=300)
def alerts_evaluate() -> dict[str, int]:
    """Periodic: tell the alert channels what started, rose or cleared."""
    from .alerts import alerts_evaluate as evaluate

    result = evaluate()
    return {"fired": result.fired, "cleared": result.cleared}


@shared_task(
    bind=True,
    name="portal.cockpit.tasks.alert_deliver",
    autoretry_for=(AlertDeliveryFailed,),
    retry_backoff=5,
    retry_backoff_max=900,
    retry_jitter=True,
    max_retries=8,
    ignore_result=True,
)
def alert_deliver(self: Task, channel_id: int, payload: dict[str, Any]) -> None:
    """Send one alert message; retried with exponential backoff (5 s .. 15 min) on failure."""
    channel = AlertChannel.objects.filter(pk=channel_id, enabled=True).first()
    if channel is None:
        return
    alert_send(channel=channel, payload=payload)
