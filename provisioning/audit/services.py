"""Running the fleet audit and fixing its findings.

A run reads AWS's view (:mod:`.snapshot`, paced like the outbox runner), compares it with the
portal's rows (:mod:`.checks`), refreshes the certificates' twins and records the findings.
A fix never calls AWS itself: it records the finding's AWS actions in the outbox (row
first), which the runner carries out with its retries and pacing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from portal.errors import Conflict
from portal.services import Actor, acting_user, audit_record
from signing.services import certificate_aws_observed

from ..lifecycle.operations import Aws
from ..lifecycle.runner import Pacer, advisory_lock, error_sentence, iot_client
from ..lifecycle.services import Change, aws_actions_enqueue
from .checks import audit_checks, portal_certificates, twins_from
from .models import AuditFinding, FleetAudit
from .snapshot import estimate_calls, snapshot_read

logger = logging.getLogger(__name__)
_ADVISORY_KEY = 0x5F0A_A0D1
SEVERE = (AuditFinding.Severity.WARNING, AuditFinding.Severity.ERROR)


class AuditRunning(Conflict):
    code = "audit_running"


def audit_rate() -> float:
    """AWS calls per second of an audit (``FLEET_AUDIT_RATE``, else the outbox's rate)."""
    rate = getattr(settings, "FLEET_AUDIT_RATE", None)
    return float(rate if rate is not None else settings.AWS_ACTION_RATE)


@dataclass(frozen=True)
class Estimate:
    devices: int
    calls: int
    seconds: float


def audit_estimate(*, devices: int, rate: float | None = None, policies: int = 1) -> Estimate:
    """Calls and duration of an audit of ``devices`` devices (one certificate and thing
    each, one CA of ours) at the paced ``rate``."""
    rate = audit_rate() if rate is None else rate
    calls = estimate_calls(certificates=devices, things=devices, policies=policies)
    return Estimate(devices=devices, calls=calls, seconds=calls / rate if rate > 0 else 0.0)


@contextlib.contextmanager
def _one_audit() -> Iterator[None]:
    """One audit at a time (PostgreSQL: an advisory lock; SQLite: a RUNNING row younger than
    an hour)."""
    with advisory_lock(_ADVISORY_KEY) as got:
        recent = timezone.now() - timedelta(hours=1)
        if not got or (
            connection.vendor != "postgresql"
            and FleetAudit.objects.filter(
                status=FleetAudit.Status.RUNNING, started_at__gte=recent
            ).exists()
        ):
            raise AuditRunning("A fleet audit is already running; wait for it to finish.")
        yield


def fleet_audit_run(*, actor: Actor = None, actor_label: str = "", fix: bool = False) -> FleetAudit:
    """Run the audit now; with ``fix``, record the fixes of its fixable findings too."""
    user = acting_user(actor)
    label = actor_label or (user.get_username() if user else "system")
    with _one_audit():
        run = FleetAudit.objects.create(requested_by=label[:150])
        pacer = Pacer(audit_rate())
        started = time.monotonic()
        try:
            iot, _ = iot_client()
            snap = snapshot_read(Aws(iot, pacer))
        except Exception as exc:  # recorded on the run; the door shows the sentence
            detail = error_sentence(exc)
            FleetAudit.objects.filter(pk=run.pk).update(
                status=FleetAudit.Status.FAILED,
                finished_at=timezone.now(),
                calls=pacer.calls,
                duration_seconds=time.monotonic() - started,
                error=str(detail)[:500],
            )
            run.refresh_from_db()
            logger.warning("fleet audit %s failed: %s", run.pk, detail)
            return run
        found = audit_checks(snap)
        now = timezone.now()
        for cert, seen in twins_from(snap, portal_certificates(snap)):
            certificate_aws_observed(certificate=cert, observed_at=now, note=cert.aws_note, **seen)
        with transaction.atomic():
            AuditFinding.objects.bulk_create(
                AuditFinding(
                    run=run,
                    check_name=f.check,
                    severity=f.severity,
                    subject=f.subject[:200],
                    detail=f.detail[:500],
                    fixable=bool(f.fix),
                    fix=f.fix,
                    certificate=f.certificate,
                )
                for f in found
            )
            severities = Counter(f.severity for f in found)
            run.status = FleetAudit.Status.DONE
            run.finished_at = timezone.now()
            run.calls = pacer.calls
            run.duration_seconds = time.monotonic() - started
            run.counts = {
                "certificates": len(snap.certificates),
                "things": len(snap.things),
                "cas": len(snap.cas),
                "policies": len(snap.policies),
                "findings": dict(severities),
            }
            run.save()
            audit_record(
                action="fleet_audit",
                obj=run,
                actor=actor,
                actor_label=label,
                detail={"calls": run.calls, "findings": dict(severities)},
            )
    if fix:
        audit_findings_fix(
            findings=run.findings.filter(fixable=True), actor=actor, actor_label=label
        )
    return run


@transaction.atomic
def audit_findings_fix(
    *, findings: Iterable[AuditFinding], actor: Actor = None, actor_label: str = ""
) -> int:
    """Record the fixes of fixable, unfixed findings as AWS actions; returns how many."""
    user = acting_user(actor)
    label = actor_label or (user.get_username() if user else "system")
    count = 0
    ids = [f.pk for f in findings]
    for finding in AuditFinding.objects.select_for_update().filter(
        pk__in=ids, fixable=True, fixed_at__isnull=True
    ):
        cert = finding.certificate
        changes = [
            Change(
                str(step["kind"]),
                certificate=cert
                if cert is not None and cert.aws_certificate_id == step.get("aws_certificate_id")
                else None,
                aws_certificate_id=str(step.get("aws_certificate_id", "")),
                thing_name=str(step.get("thing_name", "")),
            )
            for step in finding.fix
        ]
        aws_actions_enqueue(
            changes=changes,
            reason=f"fleet audit: {finding.check_name}",
            actor=actor,
            actor_label=label,
        )
        finding.fixed_at = timezone.now()
        finding.fixed_by = label[:150]
        finding.save(update_fields=["fixed_at", "fixed_by"])
        audit_record(
            action="audit_finding_fix",
            obj=finding,
            actor=actor,
            actor_label=label,
            detail={"check": finding.check_name, "subject": finding.subject},
        )
        count += 1
    return count


def has_severe(run: FleetAudit, *, unfixed_only: bool = False) -> bool:
    """Whether the run found anything of severity warning or above."""
    qs = run.findings.filter(severity__in=SEVERE)
    if unfixed_only:
        qs = qs.filter(fixed_at__isnull=True)
    return qs.exists()
