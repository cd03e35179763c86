"""What a CA rotation needs from the signing side: which certificates a CA still has, asking
devices to renew now, and the CA's retirement (refused while anything depends on it, then
archived: never deleted, its key stays in the key store)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal.services import Actor, audit_record

from ..errors import CaArchived, CaStillInUse
from ..models import CertificateAuthority, IssuedCertificate, SigningProfile

ACTIVE = IssuedCertificate.Status.ACTIVE


def ca_active_certificates(*, ca: CertificateAuthority) -> QuerySet[IssuedCertificate]:
    """The active certificates ``ca`` signed (what breaks in AWS when it is deactivated)."""
    return IssuedCertificate.objects.filter(ca=ca, status=ACTIVE)


def cas_with_active_counts(
    queryset: QuerySet[CertificateAuthority] | None = None,
) -> QuerySet[CertificateAuthority]:
    """CAs annotated with ``active_certificates``: one correlated count in the same query
    (served by the (ca, status) index), so a changelist does no per-row query."""
    counts = (
        IssuedCertificate.objects.filter(ca=OuterRef("pk"), status=ACTIVE)
        .order_by()
        .values("ca")
        .annotate(n=Count("pk"))
        .values("n")
    )
    qs = queryset if queryset is not None else CertificateAuthority.objects.all()
    return qs.annotate(
        active_certificates=Coalesce(
            Subquery(counts, output_field=IntegerField()), Value(0), output_field=IntegerField()
        )
    )


@transaction.atomic
def certificates_renew_now(*, ids: Iterable[int], actor_label: str = "") -> int:
    """Ask the devices holding these active certificates to renew now; returns how many.

    The agent's configuration then carries ``renew_after`` = this moment (its ETag changes
    once), and the renewal request is approved without a human (``renewal_approved_by``).
    """
    ids = list(ids)
    if not ids:
        return 0
    now = timezone.now()
    count = IssuedCertificate.objects.filter(pk__in=ids, status=ACTIVE).update(
        renewal_forced_at=now
    )
    if count:
        first = IssuedCertificate.objects.filter(pk__in=ids).order_by("pk").first()
        assert first is not None
        audit_record(
            action="certificates_renew_now",
            obj=first,
            actor_label=actor_label or "system",
            detail={"certificates": ids[:1000], "count": count},
        )
    return count


def ca_retirement_check(*, ca: CertificateAuthority, force: bool = False) -> int:
    """Refuse (CaStillInUse) while ``ca`` has active certificates (unless ``force``) or a
    signing profile still signs with it; returns how many active certificates it has."""
    if ca.is_archived:
        raise CaArchived(f"CA '{ca.alias}' is already retired (archived).")
    profiles = list(
        SigningProfile.objects.filter(ca=ca).order_by("name").values_list("name", flat=True)
    )
    if profiles:
        raise CaStillInUse(
            f"Signing profile{'s' if len(profiles) > 1 else ''} "
            + ", ".join(f"'{p}'" for p in profiles[:10])
            + f" still sign{'' if len(profiles) > 1 else 's'} with CA '{ca.alias}'; rotate "
            f"it first (`manage.py rotate_ca --from {ca.alias} …`)."
        )
    active = ca_active_certificates(ca=ca).count()
    if active and not force:
        raise CaStillInUse(
            f"CA '{ca.alias}' still has {active} active certificate"
            f"{'' if active == 1 else 's'}; rotate the CA first, or retire it with --force, "
            f"which breaks {'that device' if active == 1 else f'those {active} devices'} in AWS."
        )
    return active


@transaction.atomic
def ca_archive(
    *, ca: CertificateAuthority, actor: Actor = None, actor_label: str = "", forced: bool = False
) -> CertificateAuthority:
    """Mark a retired CA archived: it signs nothing more and no profile may pick it again.

    The row and its encrypted key stay (audit, the certificates it signed, re-import)."""
    row = CertificateAuthority.objects.select_for_update().get(pk=ca.pk)
    if row.archived_at is None:
        row.archived_at = timezone.now()
        row.save(update_fields=["archived_at"])
        audit_record(
            action="ca_archive",
            obj=row,
            actor=actor,
            actor_label=actor_label,
            detail={"forced": forced, "fingerprint": row.fingerprint_sha256},
        )
    ca.archived_at = row.archived_at
    return row
