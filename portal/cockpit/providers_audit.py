"""What the fleet audit (provisioning.audit) contributes: open findings by severity as a
dashboard tile, an alert condition and a metric."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from provisioning.audit.selectors import open_findings_by_severity

from .links import changelist
from .registry import (
    AlertContext,
    Firing,
    Metric,
    Tile,
    alert_condition,
    gauge,
    metric_provider,
    tile_provider,
)


@tile_provider
def audit_tiles(now: datetime) -> Iterable[Tile]:
    counts = open_findings_by_severity()
    severe = counts["error"] + counts["warning"]
    level = "error" if counts["error"] else ("warning" if counts["warning"] else "ok")
    url = changelist("provisioning", "auditfinding", fixed="open")
    yield Tile("attention", "Fleet-audit findings", severe, url, level)


@alert_condition("audit_findings", "Fleet-audit findings of severity warning or above")
def audit_findings(ctx: AlertContext) -> list[Firing]:
    counts = open_findings_by_severity()
    return [
        Firing(
            f"severity-{severity}",
            f"The fleet audit found {counts[severity]} open {severity} finding(s).",
            detail={"severity": severity, "count": counts[severity]},
        )
        for severity in ("error", "warning")
        if counts[severity]
    ]


@metric_provider
def audit_metrics(now: datetime) -> Iterable[Metric]:
    counts = open_findings_by_severity()
    yield gauge(
        "portal_audit_findings",
        "Open findings of the newest fleet audit, by severity.",
        labels=("severity",),
        samples=(((s,), n) for s, n in counts.items()),
    )
