"""The fleet audit: a run (what was looked at, how many AWS calls, how long) and its findings.

A finding says where the portal's view and AWS's view differ (or what will go wrong soon):
a check name, a severity, a subject, a sentence and, where a fix is safe, the AWS actions
that fix it (carried out through the outbox, row first).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class FleetAudit(models.Model):
    """One run of the fleet audit."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    requested_by = models.CharField(max_length=150, blank=True)
    calls = models.PositiveIntegerField("AWS calls", default=0)
    duration_seconds = models.FloatField(default=0.0)
    counts = models.JSONField(
        default=dict, blank=True, help_text="What was looked at and the findings by severity."
    )
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = "fleet audit"
        ordering = ["-started_at", "-id"]
        permissions = [("run_fleetaudit", "Can run the fleet audit and fix its findings")]

    def __str__(self) -> str:
        return f"Fleet audit {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class AuditFinding(models.Model):
    """One difference (or risk) a fleet audit found."""

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    run = models.ForeignKey(FleetAudit, on_delete=models.CASCADE, related_name="findings")
    # "check" would hide Model.check(), Django's system check hook.
    check_name = models.CharField("check", max_length=40, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, db_index=True)
    subject = models.CharField(max_length=200)
    detail = models.CharField(max_length=500)
    fixable = models.BooleanField(default=False)
    fix = models.JSONField(
        default=list, blank=True, help_text="The AWS actions that fix it: [{kind, target…}]."
    )
    certificate = models.ForeignKey(
        "signing.IssuedCertificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    fixed_at = models.DateTimeField(null=True, blank=True)
    fixed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["run", "-severity", "check_name", "subject"]
        indexes = [models.Index(fields=["run", "severity"], name="auditfinding_run_severity")]

    def __str__(self) -> str:
        return f"{self.check_name}: {self.subject}"

    def as_dict(self) -> dict[str, object]:
        """The finding as ``fleet_audit --json`` prints it."""
        return {
            "check": self.check_name,
            "severity": self.severity,
            "subject": self.subject,
            "detail": self.detail,
            "fixable": self.fixable,
        }
