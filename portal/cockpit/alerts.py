"""Alert evaluation: each enabled channel is told once when a condition starts to hold for a
subject (or its level rises), and once when it clears.

Run by the periodic task ``portal.cockpit.tasks.alerts_evaluate``. Safe twice at once: each
channel is evaluated in a transaction that first locks the channel's row, and the state rows
are unique per (channel, condition, subject); the messages go out after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.handoff import send_task_on_commit
from portal.models import AlertChannel, AlertState

from .registry import ALERT_CONDITIONS, AlertContext, Firing


@dataclass
class EvaluationResult:
    fired: int = 0
    cleared: int = 0


def alert_payload(
    *,
    event: str,
    condition: str,
    firing: Firing | None = None,
    state: AlertState | None = None,
    now: datetime,
) -> dict[str, Any]:
    spec = ALERT_CONDITIONS.get(condition)
    if firing is not None:
        subject, summary, severity = firing.subject, firing.summary, firing.severity
        level, detail = firing.level, dict(firing.detail)
    else:
        assert state is not None
        subject, summary, severity, level, detail = (
            state.subject,
            f"Cleared: {state.summary}",
            "info",
            state.level,
            {},
        )
    return {
        "event": event,
        "condition": condition,
        "condition_label": spec.label if spec else condition,
        "subject": subject,
        "summary": summary,
        "severity": severity,
        "level": level,
        "detail": detail,
        "at": now.isoformat(),
    }


def _send(channel: AlertChannel, payload: dict[str, Any]) -> None:
    from . import tasks

    send_task_on_commit(tasks.alert_deliver, channel.pk, payload)


def _reconcile(
    channel: AlertChannel, condition: str, firings: list[Firing], now: datetime
) -> EvaluationResult:
    result = EvaluationResult()
    states = {s.subject: s for s in AlertState.objects.filter(channel=channel, condition=condition)}
    current = {f.subject: f for f in firings}
    for subject, firing in current.items():
        state = states.get(subject)
        if state is not None and state.firing and firing.level <= state.level:
            continue  # already told
        if state is None:
            state = AlertState(
                channel=channel, condition=condition, subject=subject, first_fired_at=now
            )
        elif not state.firing:
            state.first_fired_at = now
        state.firing, state.level, state.summary = True, firing.level, firing.summary[:500]
        state.last_sent_at, state.cleared_at = now, None
        state.save()
        _send(channel, alert_payload(event="firing", condition=condition, firing=firing, now=now))
        result.fired += 1
    for subject, state in states.items():
        if state.firing and subject not in current:
            state.firing, state.cleared_at, state.last_sent_at = False, now, now
            state.save(update_fields=["firing", "cleared_at", "last_sent_at"])
            _send(
                channel, alert_payload(event="cleared", condition=condition, state=state, now=now)
            )
            result.cleared += 1
    return result


def alerts_evaluate(*, now: datetime | None = None) -> EvaluationResult:
    """Evaluate every enabled channel's conditions; send what started, rose or cleared."""
    now = now or timezone.now()
    total = EvaluationResult()
    cache: dict[tuple[str, AlertContext], list[Firing]] = {}
    for channel_id in AlertChannel.objects.filter(enabled=True).values_list("pk", flat=True):
        with transaction.atomic():
            channel = (
                AlertChannel.objects.select_for_update().filter(pk=channel_id, enabled=True).first()
            )
            if channel is None:
                continue
            ctx = AlertContext(now=now, station_unseen_minutes=channel.station_unseen_minutes)
            for key in channel.conditions:
                spec = ALERT_CONDITIONS.get(key)
                if spec is None:
                    continue
                if (key, ctx) not in cache:
                    cache[(key, ctx)] = spec.evaluate(ctx)
                part = _reconcile(channel, key, cache[(key, ctx)], now)
                total.fired += part.fired
                total.cleared += part.cleared
            # Conditions taken off the channel: forget their state without a message.
            AlertState.objects.filter(channel=channel).exclude(
                condition__in=channel.conditions
            ).delete()
    return total


def alert_send_test(*, channel: AlertChannel, now: datetime | None = None) -> None:
    """Send one sample message through ``channel`` now (the admin's "Send test")."""
    from .delivery import alert_send

    now = now or timezone.now()
    key = next((k for k in channel.conditions if k in ALERT_CONDITIONS), "ca_expiry")
    spec = ALERT_CONDITIONS.get(key)
    sample = (spec.sample if spec else None) or Firing("sample", "A sample alert from the portal.")
    payload = alert_payload(event="test", condition=key, firing=sample, now=now)
    payload["summary"] = f"Test: {payload['summary']}"
    alert_send(channel=channel, payload=payload)
