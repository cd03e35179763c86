"""Onboarding requests: a station submits a CSR, staff approve or reject it, a sweeper
re-enqueues what a killed worker dropped, and the station fetches the issued certificate.

One signing path, whichever door a request comes in by (API, admin, command, renewal
policy). The moves between statuses are ``OnboardingRequest.TRANSITIONS``; every statement
here that changes a status filters on the statuses allowed to become its target.

Staff's decisions (approve, reject), the hand-off to signing and the sweep are in
:mod:`.decisions`; the submission path and every refusal it can give (limits, renewal rules,
proof, identity) stay here, in the order they are checked.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from devices.models import MqttDevice, Station, name_validator
from portal.services import audit_record

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
from ..sql import advisory_lock
from .decisions import BATCH_SIZE as BATCH_SIZE
from .decisions import signing_enqueue
from .limits import pending_cap_check, submission_rate_check
from .profiles import cn_render, signing_profile_for_device
from .renewal import renewal_check

Status = OnboardingRequest.Status

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
        signing_enqueue([request.pk])
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
