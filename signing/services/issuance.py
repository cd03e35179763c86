"""The batch signing path: approved requests become certificates, one transaction a batch.

Crash safety: a batch is signed inside ONE transaction that first locks its APPROVED rows
(``select_for_update(skip_locked)``), then inserts the certificate rows and flips the requests
to ISSUED. A worker killed mid-batch rolls everything back (the requests stay APPROVED and the
sweeper re-enqueues them); the OneToOne ``IssuedCertificate.request`` makes a second
certificate for the same request impossible even if two workers raced.

What a profile puts in each certificate is built in ``certificate_build``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.db import connection, transaction
from django.utils import timezone

from devices.services import devices_certificate_issued
from portal.models import AuditEvent

from ..crypto import aws_certificate_id, fingerprint_sha256, serial_with_colons
from ..csr import public_key_fingerprint
from ..models import IssuedCertificate, OnboardingRequest, SigningProfile
from ..sql import common_names_claim, insert_rows, jit_off, requests_claim_postgresql
from .certificate_build import (
    SIGN_ERRORS,
    ProfileContext,
    certificate_build,
    common_name_for,
    profile_context,
)
from .decisions import audit_bulk

Status = OnboardingRequest.Status


# The batch path is the hot path of the portal (a fleet of 10,000 devices is one bulk
# approval). Its costs were measured (docs/benchmarks.md) and cut at the right depth:
# - the CSR's self-signature is verified ONCE, at submission (csr_validate); signing loads
#   the stored CSR's public key and checks that it is the key staff approved (its SHA-256
#   fingerprint is shown in the approval queue) instead of verifying it a second time;
# - what every certificate of a profile shares (issuer, validity, BC/KU/EKU, AKI, subject
#   parts, the unlocked CA key) is computed once per batch, not per certificate;
# - rows are read as tuples and written with one multi-row INSERT (signing/sql.py), not as
#   model instances through bulk_create.


class _Row(NamedTuple):
    """The few columns of a request that signing needs (no model instances: cheaper)."""

    pk: int
    csr_pem: str
    public_key_fingerprint: str
    profile_id: int
    device_id: int
    is_renewal: bool
    station_name: str
    device_name: str


@dataclass
class BatchResult:
    issued: int = 0
    failed: int = 0
    skipped: int = 0


_CERT_COLUMNS = (
    "request_id",
    "device_id",
    "serial",
    "common_name",
    "subject",
    "renew_after",
    "fingerprint_sha256",
    "aws_certificate_id",
    "certificate_pem",
)


def onboarding_requests_sign(*, ids: Sequence[int]) -> BatchResult:
    """Sign the APPROVED requests among ``ids`` in one transaction (see the module docstring).

    Statements per batch: claim the rows (lock, flip to ISSUED and read them in one
    statement on PostgreSQL), the CN claim (one upsert into the CN owner table), one
    INSERT (COPY) of the certificates per profile, one UPDATE of the devices, one audit row;
    failures (rare) go back from ISSUED to FAILED, one UPDATE per reason. Nothing of it is
    visible to anyone before the commit.
    """
    result = BatchResult()
    with transaction.atomic():
        jit_off()
        now = timezone.now()
        rows = _claim(ids, now=now)
        result.skipped = len(ids) - len(rows)
        if not rows:
            return result
        contexts = {
            p.pk: profile_context(p, now)
            for p in SigningProfile.objects.select_related("ca").filter(
                pk__in={r.profile_id for r in rows}
            )
        }
        failures: dict[int, str] = {}
        planned = _plan(rows, contexts, failures)
        owners = _claim_common_names(planned, now=now)
        issued: list[tuple[_Row, str, str]] = []  # (row, serial, CN)
        values: dict[int, list[tuple[Any, ...]]] = {pk: [] for pk in contexts}
        for row, serial_number, cn in planned:
            if owners.get(cn) != row.device_id:
                failures[row.pk] = (
                    f"The Common Name {cn!r} already belongs to another device (a CN names "
                    "one device for good); give this profile a CN template with ':' between "
                    "the placeholders, e.g. '{station}:{device}'."
                )
                continue
            ctx = contexts[row.profile_id]
            try:
                public_key = x509.load_pem_x509_csr(row.csr_pem.encode("ascii")).public_key()
                if public_key_fingerprint(public_key) != row.public_key_fingerprint:
                    raise ValueError(
                        "The stored CSR does not hold the public key that was approved."
                    )
                built = certificate_build(
                    ctx=ctx,
                    public_key=public_key,  # type: ignore[arg-type]
                    station_name=row.station_name,
                    device_name=row.device_name,
                    serial=serial_number,
                )
            except SIGN_ERRORS as exc:
                failures[row.pk] = str(exc) or "The CSR could not be signed."
                continue
            cert = built.cert
            serial = serial_with_colons(cert.serial_number)
            values[row.profile_id].append(
                (
                    row.pk,
                    row.device_id,
                    serial,
                    cn,
                    built.subject,
                    built.renew_after,
                    fingerprint_sha256(cert),
                    aws_certificate_id(cert),
                    cert.public_bytes(Encoding.PEM).decode("ascii"),
                )
            )
            issued.append((row, serial, cn))
        if issued:
            cert_ids: dict[int, int] = {}
            for profile_id, profile_rows in values.items():
                ctx = contexts[profile_id]
                cert_ids.update(
                    (request_id, cert_id)
                    for cert_id, request_id in insert_rows(
                        IssuedCertificate,
                        columns=_CERT_COLUMNS,
                        rows=profile_rows,
                        constants={
                            "profile_id": profile_id,
                            "ca_id": ctx.ca.pk,
                            "issuer": ctx.issuer_text,
                            "not_before": ctx.not_before,
                            "not_after": ctx.not_after,
                            "created_at": now,
                            "status": IssuedCertificate.Status.ACTIVE,
                        },
                        returning=("id", "request_id"),
                    )
                )
            issued_pks = [row.pk for row, _, _ in issued]
            # The MQTT client id is the certificate's CN.
            devices_certificate_issued(
                issued=[(row.device_id, cert_ids[row.pk], cn) for row, _, cn in issued], now=now
            )
            # One audit event per batch (who, when, which requests and serials): a row per
            # certificate cost ~10 % of the signing CPU. Renewals are named in the detail.
            first, last = cert_ids[issued_pks[0]], cert_ids[issued_pks[-1]]
            AuditEvent.objects.create(
                action="certificate_sign_batch",
                actor=None,
                actor_label="signing worker",
                object_type="signing.issuedcertificate",
                object_id=f"{first}-{last}"[:64],
                object_repr=f"{len(issued)} certificates",
                detail={
                    "requests": issued_pks,
                    "serials": [s for _, s, _ in issued],
                    "renewals": [row.pk for row, _, _ in issued if row.is_renewal],
                },
            )
        by_reason: dict[str, list[int]] = {}
        for pk, reason in failures.items():
            by_reason.setdefault(reason[:500], []).append(pk)
        # Claimed as ISSUED a moment ago in this transaction, so for everyone else these rows
        # go from what they were before the claim (APPROVED) to FAILED.
        assert all(
            Status.FAILED in OnboardingRequest.TRANSITIONS[s]
            for s in OnboardingRequest.statuses_before(Status.ISSUED)
        )
        for reason, pks in by_reason.items():
            OnboardingRequest.objects.filter(pk__in=pks, status=Status.ISSUED).update(
                status=Status.FAILED, reason=reason, issued_at=None
            )
        audit_bulk("certificate_sign_failed", list(failures), user=None, label="signing worker")
        result.issued = len(issued)
        result.failed = len(failures)
    return result


def _claim(ids: Sequence[int], *, now: datetime) -> list[_Row]:
    """Lock the APPROVED requests among ``ids``, mark them ISSUED and read what signing needs.

    Rows another worker holds are skipped (``SKIP LOCKED``), rows that may not become
    ISSUED too. The caller's transaction makes the flip visible only together with the
    certificates. PostgreSQL does it in one statement
    (:func:`signing.sql.requests_claim_postgresql`); SQLite (no row locks: the IMMEDIATE
    transaction holds the database's write lock) reads, then updates.
    """
    sources = OnboardingRequest.statuses_before(Status.ISSUED)
    if connection.vendor == "postgresql":
        return sorted(
            _Row(*values)
            for values in requests_claim_postgresql(
                ids=ids, from_statuses=sources, to_status=Status.ISSUED, now=now
            )
        )
    rows = sorted(
        _Row(*values)
        for values in (
            OnboardingRequest.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=list(ids), status__in=sources)
            .values_list(
                "pk",
                "csr_pem",
                "public_key_fingerprint",
                "profile_id",
                "device_id",
                "is_renewal",
                "station__name",
                "device__name",
            )
        )
    )
    OnboardingRequest.objects.filter(pk__in=[r.pk for r in rows], status__in=sources).update(
        status=Status.ISSUED, issued_at=now
    )
    return rows


def _plan(
    rows: Sequence[_Row], contexts: dict[int, ProfileContext], failures: dict[int, str]
) -> list[tuple[_Row, int, str]]:
    """Each signable row with its serial and CN (rows that cannot be signed go to failures)."""
    planned: list[tuple[_Row, int, str]] = []
    for row in rows:
        ctx = contexts[row.profile_id]
        if ctx.error:
            failures[row.pk] = ctx.error
            continue
        serial = x509.random_serial_number()  # 159 random bits
        try:
            cn = common_name_for(
                ctx, station_name=row.station_name, device_name=row.device_name, serial=serial
            )
        except ValueError as exc:
            failures[row.pk] = str(exc)
            continue
        planned.append((row, serial, cn))
    return planned


def _claim_common_names(
    planned: Sequence[tuple[_Row, int, str]], *, now: datetime
) -> dict[str, int]:
    """CN -> owning device for the batch's CNs, claiming the new ones for their devices.

    Within the batch the first request (lowest id) claims a CN; the owner table settles it
    against every other batch and worker (:func:`signing.sql.common_names_claim`).
    """
    claims: dict[str, int] = {}
    for row, _, cn in planned:
        claims.setdefault(cn, row.device_id)
    return common_names_claim(claims=claims, now=now)
