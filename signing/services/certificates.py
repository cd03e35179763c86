"""Issued certificates after signing: revocation, the renewal check, CA-expiry warnings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.services import Actor, audit_record

from ..models import CertificateAuthority, IssuedCertificate

CA_EXPIRY_WARNING_DAYS = 90


@transaction.atomic
def certificate_revoke(
    *, certificate: IssuedCertificate, reason: str, actor: Actor = None
) -> IssuedCertificate:
    """Revoke a certificate; the device's renewals are refused from now on."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason for the revocation."})
    cert = IssuedCertificate.objects.select_for_update().get(pk=certificate.pk)
    if cert.status == IssuedCertificate.Status.REVOKED:
        return cert
    cert.status = IssuedCertificate.Status.REVOKED
    cert.revoked_at = timezone.now()
    cert.revocation_reason = reason[:200]
    cert.save(update_fields=["status", "revoked_at", "revocation_reason"])
    audit_record(
        action="certificate_revoke",
        obj=cert,
        actor=actor,
        detail={"reason": cert.revocation_reason, "serial": cert.serial},
    )
    return cert


def certificates_revoke(*, ids: Iterable[int], reason: str, actor: Actor = None) -> int:
    count = 0
    for cert in IssuedCertificate.objects.filter(pk__in=list(ids)).exclude(
        status=IssuedCertificate.Status.REVOKED
    ):
        certificate_revoke(certificate=cert, reason=reason, actor=actor)
        count += 1
    return count


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


def ca_expiry_warnings(*, days: int = CA_EXPIRY_WARNING_DAYS) -> list[str]:
    """Sentences for CAs that expire within ``days`` (or have expired)."""
    now = timezone.now()
    out = []
    for ca in CertificateAuthority.objects.filter(not_after__lte=now + timedelta(days=days)):
        if ca.not_after <= now:
            out.append(
                f"CA '{ca.alias}' expired on {ca.not_after:%Y-%m-%d}; devices signed by "
                "it cannot renew."
            )
        else:
            left = (ca.not_after - now).days
            out.append(
                f"CA '{ca.alias}' expires on {ca.not_after:%Y-%m-%d} (in {left} days); "
                "plan a new CA and signing profile."
            )
    return out


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
