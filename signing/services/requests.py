"""Onboarding requests: a station submits a CSR, staff approve or reject it, a sweeper
re-enqueues what a killed worker dropped, and the station fetches the issued certificate.

One signing path, whichever door a request comes in by (API, admin, command, renewal
policy). The moves between statuses are ``OnboardingRequest.TRANSITIONS``; every statement
here that changes a status filters on the statuses allowed to become its target.

Signing is handed to :mod:`signing.tasks`, whose tasks call back into these services: both
import the other as a module (``from .. import tasks``), so either may be imported first.

It passes 400 lines because the submission path and every refusal it can give (limits,
renewal rules, proof, identity) are kept in one place, in the order they are checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from devices.models import MqttDevice, Station, name_validator
from portal.handoff import send_task
from portal.models import AuditEvent
from portal.services import Actor, audit_record

from .. import tasks
from ..csr import csr_validate
from ..errors import (
    CommentTooLong,
    CommonNameInUse,
    CommonNameTooLong,
    InvalidDeviceName,
    NoSigningProfile,
    PublicKeyInUse,
    RequestNotFound,
)
from ..models import CommonNameOwner, IssuedCertificate, OnboardingRequest, SigningProfile
from ..sql import advisory_lock, insert_rows, update_returning_ids
from .limits import pending_cap_check, submission_rate_check
from .profiles import cn_render, signing_profile_for_device
from .renewal import renewal_check

Status = OnboardingRequest.Status

BATCH_SIZE = 200
_SERIAL_PLACEHOLDER_LEN = 40  # hex digits of a 159-bit serial, worst case


def _device_name_check(name: str) -> None:
    try:
        name_validator(name)
    except ValidationError:
        raise InvalidDeviceName(
            "The device name must be 1-63 letters, digits, '_' or '-', "
            "starting with a letter or digit."
        ) from None


@transaction.atomic
def onboarding_request_submit(
    *,
    station: Station,
    device_name: str,
    csr: str | bytes,
    comment: str = "",
    renewal: bool = False,
    proof: dict[str, Any] | None = None,
) -> tuple[OnboardingRequest, bool]:
    """A station asks for a certificate; returns ``(request, created)``.

    The same pending (or approved) request - same device, same public key - comes back with
    ``created=False``. An unknown device name creates that device for the station. Renewals
    must come for a device holding an active certificate from us, with ``proof`` of its key
    and at its renewal point (:mod:`.renewal`); under the automatic policy they are approved
    at once and signed without a human. A first request (``renewal=False``) always waits for
    staff, also for a device that had certificates before (the recovery path).
    """
    _device_name_check(device_name)
    if len(comment) > 200:
        raise CommentTooLong("The comment is longer than 200 characters.")
    # Lock the station row: concurrent submissions of one station are serialised, so the
    # idempotency check and the rate limit cannot be raced.
    station = Station.objects.select_for_update().get(pk=station.pk)
    device = (
        MqttDevice.objects.select_related("signing_profile__ca", "current_certificate")
        .filter(station=station, name=device_name)
        .first()
    )
    profile = (
        signing_profile_for_device(device)
        if device is not None
        else signing_profile_for_device(MqttDevice(station=station, name=device_name))
    )
    if profile is None:
        raise NoSigningProfile(
            "No signing profile is set for this device and there is no "
            "default profile; ask the administrator to add one."
        )
    valid = csr_validate(csr, accepted_key_types=list(profile.accepted_key_types))
    if device is not None:
        # The same key again is a retry (e.g. the agent's POST timed out after we saved it):
        # answer with that request, also once it has been signed - as long as its certificate
        # is still active - so that one key never gets two certificates.
        existing = (
            OnboardingRequest.objects.filter(
                Q(status__in=[Status.PENDING, Status.APPROVED])
                | Q(
                    status=Status.ISSUED,
                    is_renewal=renewal,
                    certificate__status=IssuedCertificate.Status.ACTIVE,
                ),
                device=device,
                public_key_fingerprint=valid.public_key_fingerprint,
            )
            .order_by("-created_at")
            .first()
        )
        if existing is not None:
            return existing, False
    submission_rate_check(station)
    if not renewal:
        pending_cap_check(station, device)
    serial_hex = "F" * _SERIAL_PLACEHOLDER_LEN
    cn = cn_render(profile.cn_template, station=station.name, device=device_name, serial=serial_hex)
    if len(cn) > 64:
        raise CommonNameTooLong(
            f"The certificate name for device {device_name!r} would be "
            "longer than 64 characters; use a shorter device name."
        )
    _identity_check(
        device=device,
        public_key_fingerprint=valid.public_key_fingerprint,
        common_name=None if "{serial}" in profile.cn_template else cn,
    )
    if renewal:
        renewal_check(
            station=station, device=device, device_name=device_name, csr=valid.csr, proof=proof
        )
    if device is None:
        device = MqttDevice(
            station=station,
            name=device_name,
            status=MqttDevice.Status.AWAITING_APPROVAL,
            onboarding_comment=comment[:200],
        )
        device.full_clean()
        device.save()
        audit_record(
            action="device_create",
            obj=device,
            actor_label=f"station {station.name}",
            detail={"by": "onboarding request"},
        )
    else:
        # A newer key replaces a pending request with an older key (the agent lost its key).
        replaced = OnboardingRequest.objects.filter(
            device=device,
            status__in=OnboardingRequest.statuses_before(Status.REJECTED),
        )
        replaced.update(
            status=Status.REJECTED,
            decided_at=timezone.now(),
            decided_by_label="system",
            reason="Replaced by a newer request with another key.",
        )
        if not renewal and device.status != MqttDevice.Status.AWAITING_APPROVAL:
            device.status = MqttDevice.Status.AWAITING_APPROVAL
            device.save(update_fields=["status", "updated_at"])
    # A renewal the portal asked for (CA rotation: "renew now") was decided by staff when
    # they started the rotation, so it is approved like an automatic renewal.
    asked = (
        renewal
        and device is not None
        and device.current_certificate is not None
        and device.current_certificate.renewal_forced_at is not None
    )
    auto = renewal and (profile.renewal_policy == SigningProfile.RenewalPolicy.AUTOMATIC or asked)
    label = "CA rotation (renew now)" if asked else "renewal policy (automatic)"
    now = timezone.now()
    request = OnboardingRequest(
        station=station,
        device=device,
        profile=profile,
        comment=comment,
        csr_pem=valid.pem,
        key_type=valid.key_type,
        public_key_fingerprint=valid.public_key_fingerprint,
        is_renewal=renewal,
        status=Status.APPROVED if auto else Status.PENDING,
        decided_at=now if auto else None,
        decided_by_label=label if auto else "",
        sign_enqueued_at=now if auto else None,
    )
    request.full_clean()
    request.save()
    audit_record(
        action="renewal_request" if renewal else "onboarding_request",
        obj=request,
        actor_label=f"station {station.name}",
        detail={"key_type": valid.key_type, "public_key_sha256": valid.public_key_fingerprint},
    )
    if auto:
        audit_record(action="renewal_auto_approve", obj=request, actor_label=label)
        _enqueue_signing([request.pk])
    return request, True


def _identity_check(
    *, device: MqttDevice | None, public_key_fingerprint: str, common_name: str | None
) -> None:
    """Refuse a key or a CN that belongs to another device (``device`` None: a new one).

    A key counts while another device's request with it is pending or approved, or its
    certificate is active. The advisory lock on the key serialises submissions of one key
    from different stations (the station lock serialises only one station's); the CN owner
    table is the constraint behind the CN refusal (signing re-checks it).
    """
    advisory_lock(f"signing.public_key:{public_key_fingerprint}")
    others = OnboardingRequest.objects.filter(
        Q(status__in=[Status.PENDING, Status.APPROVED])
        | Q(status=Status.ISSUED, certificate__status=IssuedCertificate.Status.ACTIVE),
        public_key_fingerprint=public_key_fingerprint,
    )
    if device is not None:
        others = others.exclude(device=device)
    if others.exists():
        raise PublicKeyInUse(
            "This public key is already used by another device's request or certificate; "
            "generate a new key for this device."
        )
    if common_name is None:
        return
    owners = CommonNameOwner.objects.filter(common_name=common_name)
    if device is not None:
        owners = owners.exclude(device=device)
    if owners.exists():
        raise CommonNameInUse(
            f"The Common Name {common_name!r} already belongs to another device; ask the "
            "administrator to use a CN template with ':' between the placeholders."
        )


def onboarding_request_for_station(*, station: Station, request_id: int) -> OnboardingRequest:
    """A station's own request, or 404 (another station's request does not exist for it)."""
    row = None
    if 0 < request_id < 2**63:
        row = (
            OnboardingRequest.objects.select_related("device", "profile__ca")
            .filter(pk=request_id, station=station)
            .first()
        )
    if row is None:
        raise RequestNotFound(f"There is no onboarding request {request_id}.")
    return row


def onboarding_request_fetched(*, request: OnboardingRequest) -> IssuedCertificate | None:
    """The certificate of an issued request, as the station fetches it; ``None`` before.

    A read only: fetching changes nothing. The older certificate of the device stays active
    until the new one has proven itself on a connection (the lifecycle then supersedes it).
    """
    if request.status != Status.ISSUED:
        return None
    return IssuedCertificate.objects.select_related("ca").filter(request=request).first()


def _ids_that_may_become(target: str, ids: Iterable[int] | None) -> list[int]:
    qs = OnboardingRequest.objects.filter(status__in=OnboardingRequest.statuses_before(target))
    if ids is not None:
        qs = qs.filter(pk__in=list(ids))
    return list(qs.order_by("pk").values_list("pk", flat=True))


@transaction.atomic
def onboarding_requests_approve(
    *, ids: Iterable[int] | None, actor: Actor = None, actor_label: str = ""
) -> list[int]:
    """Approve pending requests (``ids=None``: all pending); returns the approved ids.

    One ``UPDATE … WHERE status = 'pending' RETURNING id`` per 1,000 ids (the statement
    locks and re-checks each row, so a concurrent reject cannot be overwritten), one audit
    row per request in one INSERT per chunk, and signing enqueued in batches once the
    transaction commits.
    """
    now = timezone.now()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    changes = {
        "status": Status.APPROVED,
        "decided_at": now,
        "decided_by_id": user.pk if user else None,
        "decided_by_label": label,
        "sign_enqueued_at": now,
    }
    pending = {"status": OnboardingRequest.statuses_before(Status.APPROVED)}
    approved: list[int] = []
    if ids is None:
        approved = update_returning_ids(OnboardingRequest, ids=None, where=pending, values=changes)
    else:
        for chunk in _chunks(sorted(set(ids)), 1000):
            approved.extend(
                update_returning_ids(OnboardingRequest, ids=chunk, where=pending, values=changes)
            )
    _audit_bulk("onboarding_approve", approved, user=user, label=label, at=now)
    _enqueue_signing(approved)
    return approved


@transaction.atomic
def onboarding_requests_reject(
    *, ids: Iterable[int], reason: str, actor: Actor = None, actor_label: str = ""
) -> list[int]:
    """Reject pending requests with a reason the station will see; returns the rejected ids."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason; the station's operator will see it."})
    if len(reason) > 500:
        raise ValidationError({"reason": "The reason is longer than 500 characters."})
    now = timezone.now()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    rejected: list[int] = []
    sources = OnboardingRequest.statuses_before(Status.REJECTED)
    for chunk in _chunks(_ids_that_may_become(Status.REJECTED, ids), 1000):
        locked = list(
            OnboardingRequest.objects.select_for_update()
            .filter(pk__in=chunk, status__in=sources)
            .values_list("pk", flat=True)
        )
        OnboardingRequest.objects.filter(pk__in=locked, status__in=sources).update(
            status=Status.REJECTED,
            decided_at=now,
            decided_by=user,
            decided_by_label=label,
            reason=reason,
        )
        rejected.extend(locked)
    _audit_bulk("onboarding_reject", rejected, user=user, label=label, detail={"reason": reason})
    return rejected


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _audit_bulk(
    action: str,
    ids: Sequence[int],
    *,
    user: Any,
    label: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """One audit row per request, one INSERT per 1,000 rows (rows are append-only either way)."""
    if not ids:
        return
    constants = {
        "at": at or timezone.now(),
        "action": action,
        "actor_id": user.pk if user else None,
        "actor_label": label,
        "object_type": "signing.onboardingrequest",
        "detail": detail or {},
    }
    for chunk in _chunks(ids, 1000):
        insert_rows(
            AuditEvent,
            columns=("object_id", "object_repr"),
            rows=[(str(pk), f"#{pk}") for pk in chunk],
            constants=constants,
        )


def _enqueue_signing(ids: Sequence[int]) -> None:
    """Hand the ids to the signing queue in batches, after the transaction commits."""
    if not ids:
        return
    batches = list(_chunks(list(ids), BATCH_SIZE))

    def send() -> None:
        for batch in batches:
            if not send_task(tasks.sign_batch, batch):
                return  # the broker is down: the rest would fail too; the sweeper sends them

    transaction.on_commit(send)


# Approved requests handed to signing longer ago than this and still approved are handed
# out again: a killed worker lost the batch, or the broker was down (or restarted empty)
# when they were approved. A batch takes well under a second, so 30 s only re-sends work
# that is really lost (a duplicate finds its rows no longer approved and skips them).
SWEEP_AFTER_SECONDS = 30


@transaction.atomic
def onboarding_requests_sweep(*, older_than_seconds: int = SWEEP_AFTER_SECONDS) -> int:
    """Re-enqueue approved requests whose signing was handed out long ago and never finished.

    A killed worker loses its batch, a broker outage loses the message; this puts it back.
    Safe to run twice at once: the rows are locked (skipping rows another sweep holds) and
    their ``sign_enqueued_at`` moves forward in the same transaction.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    stale = OnboardingRequest.objects.filter(status=Status.APPROVED).filter(
        Q(sign_enqueued_at__lt=cutoff) | Q(sign_enqueued_at__isnull=True)
    )
    ids = list(
        stale.select_for_update(skip_locked=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:20000]
    )
    for chunk in _chunks(ids, 1000):
        OnboardingRequest.objects.filter(pk__in=chunk).update(sign_enqueued_at=now)
    _enqueue_signing(ids)
    return len(ids)


def onboarding_requests_fail(*, ids: Sequence[int], reason: str) -> int:
    """Mark still-approved requests failed (a task that gave up); returns how many."""
    return OnboardingRequest.objects.filter(
        pk__in=list(ids),
        status__in=OnboardingRequest.statuses_before(Status.FAILED),
    ).update(status=Status.FAILED, reason=reason[:500])
