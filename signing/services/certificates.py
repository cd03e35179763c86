"""Issued certificates after signing: revocation, the renewal check, CA-expiry warnings."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from django.db import transaction
from django.utils import timezone

from devices.services import device_certificate_revoked
from portal.services import Actor, audit_record

from ..errors import InvalidRevocationReason
from ..models import CertificateAuthority, IssuedCertificate
from ..signals import certificate_revoked, certificate_superseded

# Days before a CA's end at which it is warned about (the first is the earliest warning).
CA_EXPIRY_THRESHOLDS = (180, 90, 30, 7)
CA_EXPIRY_WARNING_DAYS = max(CA_EXPIRY_THRESHOLDS)


# RFC 5280 CRLReason names (cryptography's x509.ReasonFlags values) a revocation may give.
# certificateHold is a temporary hold and removeFromCRL undoes one; AWS IoT's REVOKED is
# final, so neither is offered. aACompromise concerns attribute authorities only.
REVOCATION_REASONS: tuple[str, ...] = tuple(
    flag.value
    for flag in (
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.ca_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.privilege_withdrawn,
        x509.ReasonFlags.unspecified,
    )
)
REVOCATION_COMMENT_MAX = 200


def revocation_reason_parse(reason: str) -> str:
    """The RFC 5280 name of ``reason`` (case and ``_``/``-`` ignored); InvalidRevocationReason
    with a sentence naming the accepted ones otherwise."""
    wanted = re.sub(r"[\s_-]", "", (reason or "")).lower()
    for name in REVOCATION_REASONS:
        if name.lower() == wanted:
            return name
    given = f"'{reason.strip()[:40]}' is not" if (reason or "").strip() else "No reason is"
    raise InvalidRevocationReason(
        f"{given} an RFC 5280 revocation reason the portal accepts; use one of "
        f"{', '.join(REVOCATION_REASONS)}."
    )


@transaction.atomic
def certificate_revoke(
    *,
    certificate: IssuedCertificate,
    reason: str,
    comment: str = "",
    actor: Actor = None,
    actor_label: str = "",
) -> IssuedCertificate:
    """Revoke a certificate with an RFC 5280 reason; the device's renewals are refused from now on.

    Idempotent: a revoked certificate stays as it was. On the first revocation the device
    shows as revoked (when this was its current certificate) and ``certificate_revoked`` is
    sent inside this transaction, so what a receiver records (AWS actions) commits with it.
    """
    code = revocation_reason_parse(reason)
    comment = (comment or "").strip()
    if len(comment) > REVOCATION_COMMENT_MAX:
        raise InvalidRevocationReason(
            f"The comment is longer than {REVOCATION_COMMENT_MAX} characters."
        )
    cert = IssuedCertificate.objects.select_for_update().get(pk=certificate.pk)
    if cert.status == IssuedCertificate.Status.REVOKED:
        return cert
    cert.status = IssuedCertificate.Status.REVOKED
    cert.revoked_at = timezone.now()
    cert.revocation_reason = code
    cert.revocation_comment = comment
    cert.save(update_fields=["status", "revoked_at", "revocation_reason", "revocation_comment"])
    device_certificate_revoked(device_id=cert.device_id, certificate_id=cert.pk)
    audit_record(
        action="certificate_revoke",
        obj=cert,
        actor=actor,
        actor_label=actor_label,
        detail={"reason": code, "comment": comment, "serial": cert.serial},
    )
    certificate_revoked.send(
        sender=IssuedCertificate,
        certificate=cert,
        reason=code,
        actor=actor,
        actor_label=actor_label,
    )
    return cert


@transaction.atomic
def certificate_supersede(
    *, certificate: IssuedCertificate, successor: IssuedCertificate, actor_label: str = ""
) -> bool:
    """The renewal ``successor`` proved itself: ``certificate`` (still active) is superseded.

    Sends :data:`signing.signals.certificate_superseded` inside this transaction (the
    lifecycle records the retirement in AWS as rows). False when it was no longer active.
    """
    cert = IssuedCertificate.objects.select_for_update().get(pk=certificate.pk)
    if cert.status != IssuedCertificate.Status.ACTIVE or cert.pk == successor.pk:
        return False
    cert.status = IssuedCertificate.Status.SUPERSEDED
    cert.superseded_at = timezone.now()
    cert.save(update_fields=["status", "superseded_at"])
    audit_record(
        action="certificate_supersede",
        obj=cert,
        actor_label=actor_label or "certificate lifecycle",
        detail={"serial": cert.serial, "by_serial": successor.serial},
    )
    certificate_superseded.send(sender=IssuedCertificate, certificate=cert, successor=successor)
    return True


@transaction.atomic
def certificate_connected(*, certificate: IssuedCertificate, at: datetime) -> bool:
    """The station's agent reported a connection with ``certificate``: remember the first."""
    updated = IssuedCertificate.objects.filter(
        pk=certificate.pk, first_connected_at__isnull=True
    ).update(first_connected_at=at)
    if updated:
        certificate.first_connected_at = at
    return bool(updated)


def certificates_revoke(
    *, ids: Iterable[int], reason: str, comment: str = "", actor: Actor = None
) -> int:
    """Revoke the certificates ``ids`` (each in its own transaction); how many were revoked."""
    revocation_reason_parse(reason)  # refuse a bad reason before touching anything
    count = 0
    for cert in IssuedCertificate.objects.filter(pk__in=list(ids)).exclude(
        status=IssuedCertificate.Status.REVOKED
    ):
        certificate_revoke(certificate=cert, reason=reason, comment=comment, actor=actor)
        count += 1
    return count


@transaction.atomic
def certificates_force_renewal(*, ids: Iterable[int], actor: Actor = None) -> int:
    """Let the devices of these active certificates renew now, before their renewal point.

    The desired configuration then carries the forced time as ``renew_after``, so the
    agent renews at its next poll; the renewal still needs the proof of the current key.
    """
    now = timezone.now()
    rows = list(
        IssuedCertificate.objects.select_for_update().filter(
            pk__in=list(ids),
            status=IssuedCertificate.Status.ACTIVE,
            renewal_forced_at__isnull=True,
        )
    )
    for cert in rows:
        cert.renewal_forced_at = now
        cert.save(update_fields=["renewal_forced_at"])
        audit_record(
            action="certificate_force_renewal",
            obj=cert,
            actor=actor,
            detail={"serial": cert.serial},
        )
    return len(rows)


def certificate_aws_observed(
    *,
    certificate: IssuedCertificate,
    status: str,
    thing: str,
    policies: list[str],
    observed_at: datetime,
    note: str = "",
) -> None:
    """Record what AWS IoT showed of ``certificate`` (its twin): status, thing, policies."""
    IssuedCertificate.objects.filter(pk=certificate.pk).update(
        aws_status=status[:32],
        aws_thing=thing[:128],
        aws_policies=list(policies),
        aws_observed_at=observed_at,
        aws_note=note[:300],
    )
    certificate.aws_status, certificate.aws_thing = status[:32], thing[:128]
    certificate.aws_policies, certificate.aws_observed_at = list(policies), observed_at
    certificate.aws_note = note[:300]


@dataclass(frozen=True)
class CaExpiryNotice:
    """One CA inside a warning threshold: which CA, how many days are left, the sentence."""

    ca_id: int
    alias: str
    not_after: datetime
    days_left: int
    threshold: int
    sentence: str


def ca_expiry_threshold(days_left: int) -> int | None:
    """The smallest threshold of :data:`CA_EXPIRY_THRESHOLDS` that ``days_left`` is within."""
    inside = [t for t in CA_EXPIRY_THRESHOLDS if days_left <= t]
    return min(inside) if inside else None


def ca_expiry_notices(*, now: datetime | None = None) -> list[CaExpiryNotice]:
    """CAs within 180, 90, 30 or 7 days of their end (or past it), soonest first.

    Archived (retired) CAs are left out: nothing depends on them any more. Each sentence
    points at the way out, the Rotate CA action and its command.
    """
    now = now or timezone.now()
    horizon = now + timedelta(days=max(CA_EXPIRY_THRESHOLDS))
    out = []
    for ca in CertificateAuthority.objects.filter(
        not_after__lte=horizon, archived_at__isnull=True
    ).order_by("not_after", "alias"):
        rotate = (
            f"rotate it: Rotate CA on the CA's page in the key store, or "
            f"`manage.py rotate_ca --from {ca.alias} --generate-ca DN`."
        )
        if ca.not_after <= now:
            days_left, threshold = 0, 0
            sentence = (
                f"CA '{ca.alias}' expired on {ca.not_after:%Y-%m-%d}; devices signed by it "
                f"cannot renew or connect: {rotate}"
            )
        else:
            days_left = (ca.not_after - now).days
            threshold = ca_expiry_threshold(days_left) or 0
            sentence = (
                f"CA '{ca.alias}' expires on {ca.not_after:%Y-%m-%d} (in {days_left} "
                f"day{'' if days_left == 1 else 's'}, inside the {threshold}-day warning); "
                f"{rotate}"
            )
        out.append(
            CaExpiryNotice(
                ca_id=ca.pk,
                alias=ca.alias,
                not_after=ca.not_after,
                days_left=days_left,
                threshold=threshold,
                sentence=sentence,
            )
        )
    return out


def ca_expiry_warnings(*, now: datetime | None = None) -> list[str]:
    """The sentences of :func:`ca_expiry_notices` (commands, logs, the changelists)."""
    return [notice.sentence for notice in ca_expiry_notices(now=now)]


@dataclass
class RenewalCheck:
    marked_due: int
    warnings: list[str]


@transaction.atomic
def renewals_check() -> RenewalCheck:
    """Mark active certificates whose renewal point has passed; list CA-expiry warnings."""
    now = timezone.now()
    marked = IssuedCertificate.objects.filter(
        status=IssuedCertificate.Status.ACTIVE, renew_after__lte=now, renewal_due_at__isnull=True
    ).update(renewal_due_at=now)
    return RenewalCheck(marked_due=marked, warnings=ca_expiry_warnings())
