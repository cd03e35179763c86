"""Limits on what one station may submit: new requests per minute, requests waiting for a person.

Both are counted in the database under the station's row lock (the caller holds it), so they
hold across web processes. Refusals are 429s that say when to try again (``Retry-After``).
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from devices.models import MqttDevice, Station

from ..errors import RateLimitedSubmissions, TooManyPendingRequests
from ..models import OnboardingRequest

Status = OnboardingRequest.Status


def submission_rate_check(station: Station) -> None:
    """At most SIGNING_RATE_LIMIT_PER_MINUTE new requests of a station in a minute."""
    limit = int(getattr(settings, "SIGNING_RATE_LIMIT_PER_MINUTE", 60))
    now = timezone.now()
    since = now - timedelta(minutes=1)
    recent = OnboardingRequest.objects.filter(station=station, created_at__gte=since)
    if recent.count() >= limit:
        oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
        wait = (oldest + timedelta(minutes=1) - now).total_seconds() if oldest else 60
        raise RateLimitedSubmissions(
            f"Station {station.name} sent more than {limit} onboarding requests in a minute; "
            "try again later.",
            retry_after=max(1, math.ceil(wait)),
        )


def pending_cap_check(station: Station, device: MqttDevice | None) -> None:
    """At most SIGNING_MAX_PENDING_PER_STATION requests of a station wait for a person.

    A device's own pending request does not count: a new one replaces it.
    """
    cap = int(getattr(settings, "SIGNING_MAX_PENDING_PER_STATION", 50))
    pending = OnboardingRequest.objects.filter(station=station, status=Status.PENDING)
    if device is not None:
        pending = pending.exclude(device=device)
    if pending.count() >= cap:
        raise TooManyPendingRequests(
            f"Station {station.name} already has {cap} onboarding requests waiting for "
            "approval; try again once staff have decided on them.",
            retry_after=int(getattr(settings, "SIGNING_PENDING_RETRY_AFTER", 300)),
        )
