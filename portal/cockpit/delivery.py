"""Sending one alert message: by email (Django's mail settings) or a signed webhook POST.

Webhook signature: ``X-Portal-Signature: sha256=<hex>``, the HMAC-SHA256 with the channel's
secret over ``<X-Portal-Timestamp> + "." + <raw body>`` (docs/operations.md shows how a
receiver verifies it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import send_mail

from portal.errors import DomainError
from portal.models import AlertChannel

USER_AGENT = "fleet-onboarding-portal-alerts/1"
WEBHOOK_TIMEOUT = 10.0


class AlertDeliveryFailed(DomainError):
    """The receiver refused the message or could not be reached (the task retries)."""

    code = "alert_delivery_failed"


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _subject(payload: dict[str, Any]) -> str:
    event = {"firing": "ALERT", "cleared": "CLEARED", "test": "TEST"}.get(payload["event"], "ALERT")
    return f"[fleet portal] {event}: {payload['summary']}"[:200]


def _email_text(payload: dict[str, Any]) -> str:
    lines = [
        payload["summary"],
        "",
        f"Event:     {payload['event']}",
        f"Condition: {payload['condition_label']} ({payload['condition']})",
        f"Subject:   {payload['subject']}",
        f"Severity:  {payload['severity']}",
        f"At:        {payload['at']}",
    ]
    if payload.get("detail"):
        lines += ["", "Detail:", json.dumps(payload["detail"], indent=2, sort_keys=True)]
    return "\n".join(lines) + "\n"


def alert_send(*, channel: AlertChannel, payload: dict[str, Any]) -> None:
    """Deliver ``payload`` once through ``channel``; raises AlertDeliveryFailed on failure."""
    if channel.kind == AlertChannel.Kind.EMAIL:
        recipients = [a.strip() for a in channel.email_to.split(",") if a.strip()]
        if not recipients:
            raise AlertDeliveryFailed(f"Alert channel '{channel.name}' has no email recipients.")
        try:
            send_mail(
                _subject(payload),
                _email_text(payload),
                settings.DEFAULT_FROM_EMAIL,
                recipients,
                fail_silently=False,
            )
        except (OSError, ValueError) as exc:
            raise AlertDeliveryFailed(
                f"Sending the alert email failed ({type(exc).__name__})."
            ) from None
        return
    body = webhook_body(payload)
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        channel.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Portal-Timestamp": timestamp,
            "X-Portal-Signature": webhook_signature(channel.webhook_secret or "", timestamp, body),
            "X-Portal-Event": payload["event"],
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310
            response.read(1024)
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryFailed(
            f"The webhook of alert channel '{channel.name}' answered HTTP {exc.code}."
        ) from None
    except (OSError, ValueError) as exc:
        raise AlertDeliveryFailed(
            f"The webhook of alert channel '{channel.name}' could not be reached "
            f"({type(exc).__name__})."
        ) from None
