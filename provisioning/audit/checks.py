"""The fleet audit's checks: the portal's rows against AWS's view (:mod:`.snapshot`).

Each check yields :class:`Found` items: a check name, a severity, a subject, a sentence, and
for a safe fix the AWS actions (kind + target) the outbox will carry out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from devices.models import MqttDevice
from signing.models import IssuedCertificate
from signing.services import CA_EXPIRY_WARNING_DAYS

from ..lifecycle.models import AwsAction
from .snapshot import Snapshot, policy_too_broad

Kind = AwsAction.Kind
ERROR, WARNING, INFO = "error", "warning", "info"
# A renewal point passed this long ago without a renewal is a finding (the agent renews
# within seconds of it; a minute's slack covers a report in flight).
RENEWAL_SLACK = timedelta(minutes=10)


@dataclass
class Found:
    check: str
    severity: str
    subject: str
    detail: str
    fix: list[dict[str, str]] = field(default_factory=list)
    certificate: IssuedCertificate | None = None


def _cert_subject(cert_id: str, cn: str = "") -> str:
    return f"certificate {cert_id[:12]}…" + (f" ({cn})" if cn else "")


def _retire(cert_id: str, *, thing: str = "") -> list[dict[str, str]]:
    return [
        {"kind": Kind.DEACTIVATE, "aws_certificate_id": cert_id},
        {"kind": Kind.DETACH_THING, "aws_certificate_id": cert_id, "thing_name": thing},
        {"kind": Kind.DETACH_POLICIES, "aws_certificate_id": cert_id},
    ]


def portal_certificates(snap: Snapshot) -> dict[str, IssuedCertificate]:
    """The portal's certificates AWS holds, by AWS id (one query)."""
    return {
        c.aws_certificate_id: c
        for c in IssuedCertificate.objects.filter(
            aws_certificate_id__in=list(snap.certificates)
        ).select_related("device")
    }


def check_portal_state(snap: Snapshot, ours: dict[str, IssuedCertificate]) -> Iterator[Found]:
    """Revoked or superseded in the portal, still ACTIVE in AWS; never issued by the portal."""
    for cert_id, aws_cert in snap.certificates.items():
        cert = ours.get(cert_id)
        if cert is None:
            attached = bool(aws_cert.things or aws_cert.policies)
            active = aws_cert.status == "ACTIVE"
            where = f", attached to {', '.join(aws_cert.things)}" if aws_cert.things else ""
            yield Found(
                "unknown_certificate",
                ERROR if active else (WARNING if attached else INFO),
                _cert_subject(cert_id),
                f"A certificate under our CA '{aws_cert.ca_alias}' that the portal never "
                f"issued is {aws_cert.status} in AWS{where}"
                + ("." if active or attached else "; harmless, delete it when sure."),
                fix=_retire(cert_id) if active or attached else [],
            )
            continue
        if aws_cert.status != "ACTIVE":
            continue
        if cert.status == IssuedCertificate.Status.REVOKED:
            yield Found(
                "revoked_but_active",
                ERROR,
                _cert_subject(cert_id, cert.common_name),
                "Revoked in the portal but ACTIVE in AWS: the device can still connect.",
                fix=[
                    {"kind": Kind.REVOKE, "aws_certificate_id": cert_id},
                    {"kind": Kind.DETACH_POLICIES, "aws_certificate_id": cert_id},
                ],
                certificate=cert,
            )
        elif cert.status == IssuedCertificate.Status.SUPERSEDED:
            yield Found(
                "superseded_but_active",
                ERROR,
                _cert_subject(cert_id, cert.common_name),
                "Superseded by a proven renewal but still ACTIVE in AWS.",
                fix=_retire(cert_id),
                certificate=cert,
            )


def check_things(snap: Snapshot, ours: dict[str, IssuedCertificate]) -> Iterator[Found]:
    """A thing with more than one ACTIVE certificate; a thing of ours without one."""
    by_thing = snap.things_to_certificates()
    names = set(by_thing) | snap.things
    newest: dict[str, IssuedCertificate] = {}
    for cert in (
        IssuedCertificate.objects.filter(
            status=IssuedCertificate.Status.ACTIVE, common_name__in=list(names)
        )
        .order_by("common_name", "-created_at", "-id")
        .only("pk", "common_name", "aws_certificate_id", "first_connected_at", "created_at")
    ):
        newest.setdefault(cert.common_name, cert)
    our_cns = set(
        IssuedCertificate.objects.filter(common_name__in=list(names)).values_list(
            "common_name", flat=True
        )
    )
    for thing in sorted(names):
        certs = by_thing.get(thing, [])
        active = [c for c in certs if c.status == "ACTIVE"]
        keep = newest.get(thing)
        if len(active) > 1:
            extra = [
                c for c in active if keep is None or c.certificate_id != keep.aws_certificate_id
            ]
            proven = keep is not None and keep.first_connected_at is not None
            detail = f"{len(active)} ACTIVE certificates are attached to the thing"
            if proven:
                detail += "; all but the device's newest active certificate can be retired."
            elif keep is not None:
                detail += (
                    "; the newest has not been proven on a connection yet (a renewal in "
                    "flight): wait for it."
                )
            else:
                detail += "; none is the portal's active certificate of a device."
            yield Found(
                "thing_multiple_active",
                ERROR if proven or keep is None else WARNING,
                f"thing {thing}",
                detail,
                fix=[a for c in extra for a in _retire(c.certificate_id, thing=thing)]
                if proven
                else [],
            )
        elif not active and thing in our_cns:
            yield Found(
                "thing_without_active_certificate",
                WARNING,
                f"thing {thing}",
                "The thing has no ACTIVE certificate attached: its device cannot connect.",
            )


def check_devices(snap: Snapshot) -> Iterator[Found]:
    """A device that connected (its certificate is in AWS) whose thing is missing."""
    things = snap.things | set(snap.things_to_certificates())
    rows = (
        IssuedCertificate.objects.filter(status=IssuedCertificate.Status.ACTIVE)
        .filter(
            Q(aws_certificate_id__in=list(snap.certificates)) | Q(first_connected_at__isnull=False)
        )
        .exclude(common_name__in=list(things))
        .select_related("device__station")
    )
    for cert in rows:
        device = cert.device
        yield Found(
            "device_without_thing",
            WARNING,
            f"device {device.station.name}/{device.name}",
            f"The device's certificate is known in AWS, but there is no thing {cert.common_name}.",
            certificate=cert,
        )


def check_pending(snap: Snapshot, ours: dict[str, IssuedCertificate]) -> Iterator[Found]:
    for cert_id, aws_cert in snap.certificates.items():
        if aws_cert.status != "PENDING_ACTIVATION":
            continue
        cert = ours.get(cert_id)
        note = cert.aws_note if cert is not None and cert.aws_note else ""
        yield Found(
            "pending_activation",
            WARNING,
            _cert_subject(cert_id, cert.common_name if cert else ""),
            note or "Stuck in PENDING_ACTIVATION: JITP did not activate it.",
            certificate=cert,
        )


def check_policies(snap: Snapshot) -> Iterator[Found]:
    for name in sorted(snap.policies):
        why = policy_too_broad(snap.policies[name])
        if why:
            version = snap.policy_versions.get(name, "")
            yield Found(
                "policy_too_broad",
                WARNING,
                f"policy {name}" + (f" (version {version})" if version else ""),
                f"The policy attached to our certificates is too broad: {why}.",
            )


def check_cas(snap: Snapshot) -> Iterator[Found]:
    for ca_id, status in sorted(snap.cas.items()):
        if ca_id not in snap.our_cas and status == "ACTIVE":
            yield Found(
                "ca_not_in_key_store",
                WARNING,
                f"CA {ca_id[:12]}…",
                "An ACTIVE CA registered in AWS is not in the portal's key store: certificates "
                "it signs are not the portal's.",
            )
    now = timezone.now()
    soon = now + timedelta(days=CA_EXPIRY_WARNING_DAYS)
    for ca in snap.our_cas.values():
        if ca.not_after <= soon:
            days = (ca.not_after - now).days
            yield Found(
                "ca_expiring",
                ERROR if ca.not_after <= now else WARNING,
                f"CA {ca.alias}",
                f"The CA registered in AWS expires on {ca.not_after:%Y-%m-%d}"
                + (" (expired)." if days < 0 else f" (in {days} days); plan its rotation."),
            )


def check_renewals() -> Iterator[Found]:
    """A device whose newest active certificate is past its renewal point, not renewed."""
    cutoff = timezone.now() - RENEWAL_SLACK
    newest: dict[int, IssuedCertificate] = {}
    overdue_devices = IssuedCertificate.objects.filter(
        status=IssuedCertificate.Status.ACTIVE, renew_after__lte=cutoff
    ).values_list("device_id", flat=True)
    for cert in (
        IssuedCertificate.objects.filter(
            device_id__in=overdue_devices, status=IssuedCertificate.Status.ACTIVE
        )
        .select_related("device__station")
        .order_by("device_id", "-created_at", "-id")
    ):
        newest.setdefault(cert.device_id, cert)
    for cert in newest.values():
        if cert.renew_after > cutoff:
            continue
        device: MqttDevice = cert.device
        yield Found(
            "renewal_overdue",
            ERROR if cert.not_after <= timezone.now() else WARNING,
            f"device {device.station.name}/{device.name}",
            f"The certificate passed its renewal point on {cert.renew_after:%Y-%m-%d %H:%M} UTC "
            f"and was not renewed; it expires on {cert.not_after:%Y-%m-%d %H:%M} UTC.",
            certificate=cert,
        )


def audit_checks(snap: Snapshot) -> list[Found]:
    ours = portal_certificates(snap)
    found: list[Found] = []
    for items in (
        check_portal_state(snap, ours),
        check_things(snap, ours),
        check_devices(snap),
        check_pending(snap, ours),
        check_policies(snap),
        check_cas(snap),
        check_renewals(),
    ):
        found.extend(items)
    return found


def twins_from(snap: Snapshot, ours: dict[str, IssuedCertificate]) -> list[tuple[Any, dict]]:
    """Portal certificates whose stored twin differs from what the audit saw."""
    out = []
    for cert_id, cert in ours.items():
        seen = snap.certificates[cert_id]
        thing = ",".join(seen.things)
        if (cert.aws_status, cert.aws_thing, list(cert.aws_policies)) != (
            seen.status,
            thing,
            seen.policies,
        ):
            out.append((cert, {"status": seen.status, "thing": thing, "policies": seen.policies}))
    return out
