"""Reads of the fleet audit for other doors (the operator's dashboard, the admin index)."""

from __future__ import annotations

from django.db.models import Count

from .models import AuditFinding, FleetAudit


def latest_audit() -> FleetAudit | None:
    """The newest finished audit run (done), or None."""
    return FleetAudit.objects.filter(status=FleetAudit.Status.DONE).order_by("-started_at").first()


def open_findings_by_severity() -> dict[str, int]:
    """Unfixed findings of the newest finished audit, counted by severity (every severity
    present as a key, 0 when none)."""
    counts = {s: 0 for s in AuditFinding.Severity.values}
    run = latest_audit()
    if run is None:
        return counts
    rows = (
        AuditFinding.objects.filter(run=run, fixed_at__isnull=True)
        .values("severity")
        .annotate(n=Count("id"))
    )
    for row in rows:
        counts[row["severity"]] = row["n"]
    return counts
