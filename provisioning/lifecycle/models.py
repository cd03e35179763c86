"""The outbox of changes the portal wants in AWS IoT: one row per intended change.

A service that decides something AWS must know (revoke, retire, decommission, rotate)
writes an :class:`AwsAction` in its own transaction; a worker carries it out later
(``provisioning.lifecycle.runner``), with retries, pacing and a record of each attempt in
the AWS call log (``AwsApiCall.action``).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AwsAction(models.Model):
    """One change to make in AWS IoT, carried out idempotently by a worker."""

    class Kind(models.TextChoices):
        CONFIRM = "confirm", "Confirm certificate (read its state in AWS)"
        DEACTIVATE = "deactivate", "Set certificate INACTIVE"
        REVOKE = "revoke", "Set certificate REVOKED"
        DETACH_THING = "detach_thing", "Detach certificate from thing"
        DETACH_POLICIES = "detach_policies", "Detach policies from certificate"
        DELETE = "delete", "Delete certificate"
        MOVE_TO_GROUP = "move_to_group", "Move thing to thing group"
        DELETE_THING = "delete_thing", "Delete thing"
        DEACTIVATE_CA = "deactivate_ca", "Set CA certificate INACTIVE"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    certificate = models.ForeignKey(
        "signing.IssuedCertificate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="aws_actions",
    )
    aws_certificate_id = models.CharField("AWS certificate id", max_length=64, blank=True)
    thing_name = models.CharField(max_length=128, blank=True)
    group_name = models.CharField("thing group", max_length=128, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    not_before = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="Not carried out before this time."
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "AWS action"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "not_before"], name="awsaction_due")]
        constraints = [
            # One open action of a kind per target: enqueueing the same change twice is a no-op.
            models.UniqueConstraint(
                fields=["kind", "aws_certificate_id", "thing_name", "group_name"],
                condition=models.Q(status__in=["pending", "running"]),
                name="awsaction_one_open_per_target",
            )
        ]

    def __str__(self) -> str:
        target = self.aws_certificate_id[:12] or self.thing_name or self.group_name
        return f"{self.get_kind_display()} {target} ({self.status})"

    @property
    def target(self) -> str:
        parts = []
        if self.aws_certificate_id:
            parts.append(f"certificate {self.aws_certificate_id[:12]}…")
        if self.thing_name:
            parts.append(f"thing {self.thing_name}")
        if self.group_name:
            parts.append(f"group {self.group_name}")
        return ", ".join(parts)
