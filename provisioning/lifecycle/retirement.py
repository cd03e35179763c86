"""Retirement after a proven renewal, and the confirm after a device's first connection.

- A state report says a device is connected with certificate serial X: X's first connection
  is recorded and, while its twin is not yet confirmed ACTIVE on its thing, one CONFIRM is
  enqueued (not one per report).
- The confirm finds the certificate ACTIVE on the thing named by its CN: the certificate has
  proven itself (:func:`certificate_proven`); the device's older active certificates are
  superseded (``signing.services.certificate_supersede``).
- The supersede's signal records the retirement in AWS as outbox rows: DEACTIVATE,
  DETACH_THING and DETACH_POLICIES now, DELETE after the grace period
  (``AWS_RETIRED_CERTIFICATE_GRACE_SECONDS`` or ``…_GRACE_DAYS``).

Until the new certificate has proven itself, the old one stays ACTIVE and working.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from devices.models import Station
from signing.crypto import serial_normalize
from signing.models import IssuedCertificate
from signing.services import certificate_connected, certificate_supersede

from .models import AwsAction
from .services import Change, aws_actions_enqueue

Kind = AwsAction.Kind
ACTOR = "certificate lifecycle"


def retirement_grace() -> timedelta:
    """How long a retired certificate stays in AWS (INACTIVE, detached) before its deletion."""
    seconds = getattr(settings, "AWS_RETIRED_CERTIFICATE_GRACE_SECONDS", None)
    if seconds is not None:
        return timedelta(seconds=int(seconds))
    return timedelta(days=int(settings.AWS_RETIRED_CERTIFICATE_GRACE_DAYS))


def confirmed(cert: IssuedCertificate) -> bool:
    """Whether AWS was seen to hold ``cert`` ACTIVE on the thing named by its CN."""
    return cert.aws_status == "ACTIVE" and cert.common_name in cert.aws_thing.split(",")


def certificates_connection_reported(
    *, station: Station, devices: dict[str, dict[str, Any]]
) -> int:
    """A state report's connected devices: record first connections, enqueue their confirms.

    Called on every report, so the common case (every certificate already confirmed) is one
    read and no write. Returns how many confirms were enqueued.
    """
    serials = {
        serial: name
        for name, entry in devices.items()
        if entry.get("connected") and entry.get("status") == "connected"
        for serial in [serial_normalize(entry.get("certificate_serial") or "")]
        if serial
    }
    if not serials:
        return 0
    certs = IssuedCertificate.objects.filter(
        serial__in=list(serials),
        device__station=station,
        status=IssuedCertificate.Status.ACTIVE,
    ).only(
        "pk",
        "serial",
        "device_id",
        "common_name",
        "created_at",
        "aws_certificate_id",
        "aws_status",
        "aws_thing",
        "aws_observed_at",
        "first_connected_at",
    )
    now = timezone.now()
    enqueued = 0
    for cert in certs:
        if cert.first_connected_at is None:
            certificate_connected(certificate=cert, at=now)
        if confirmed(cert):
            continue
        # Once per connection: a settled confirm (observed after the first connection) is
        # not repeated on every report; the fleet audit keeps watching it.
        first = cert.first_connected_at or now
        if cert.aws_observed_at is not None and cert.aws_observed_at >= first:
            continue
        aws_actions_enqueue(
            changes=[Change(Kind.CONFIRM, certificate=cert)],
            reason="the agent reported its first connection",
            actor_label=ACTOR,
        )
        enqueued += 1
    return enqueued


@transaction.atomic
def certificate_proven(*, certificate: IssuedCertificate) -> int:
    """``certificate`` is ACTIVE on its thing after a reported connection: supersede the
    device's older active certificates (their retirement in AWS follows). Returns how many."""
    cert = IssuedCertificate.objects.get(pk=certificate.pk)
    if cert.status != IssuedCertificate.Status.ACTIVE or cert.first_connected_at is None:
        return 0
    older = IssuedCertificate.objects.filter(
        device_id=cert.device_id,
        status=IssuedCertificate.Status.ACTIVE,
        created_at__lte=cert.created_at,
    ).exclude(pk=cert.pk)
    return sum(certificate_supersede(certificate=old, successor=cert) for old in older)


def retirement_enqueue(*, certificate: IssuedCertificate, reason: str) -> list[AwsAction]:
    """The outbox rows that retire ``certificate`` in AWS: INACTIVE and detached now,
    deleted after the grace period."""
    delete_at = timezone.now() + retirement_grace()
    return aws_actions_enqueue(
        changes=[
            Change(Kind.DEACTIVATE, certificate=certificate),
            Change(Kind.DETACH_THING, certificate=certificate),
            Change(Kind.DETACH_POLICIES, certificate=certificate),
            Change(Kind.DELETE, certificate=certificate, not_before=delete_at),
        ],
        reason=reason,
        actor_label=ACTOR,
    )


def on_certificate_superseded(
    sender: Any, certificate: IssuedCertificate, successor: IssuedCertificate, **kwargs: Any
) -> None:
    """Receiver of ``signing.signals.certificate_superseded`` (in the supersede's transaction)."""
    if certificate.aws_certificate_id:
        retirement_enqueue(
            certificate=certificate, reason=f"superseded by {successor.serial} (proven)"
        )
