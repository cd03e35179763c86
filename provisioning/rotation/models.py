"""CA rotation with overlap: the rotation (old CA -> new CA, its pace and threshold), one row
per certificate the wave asked to renew, and the retirement of a CA in AWS."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField

from signing.models import CertificateAuthority, IssuedCertificate

from ..jobs.models import Job


class CaRotation(models.Model):
    """Move a fleet from one CA to another with both registered in AWS meanwhile.

    Its state machine::

        RUNNING --failures reach the threshold--> PAUSED --resume--> RUNNING
        RUNNING --no active certificate left under the old CA, old CA retired--> DONE
        RUNNING --registration or retirement failed--> FAILED

    The new CA's password is kept encrypted here only until the signing profiles hold it
    (the worker reads it from this row; it never travels in task arguments).
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Phase(models.TextChoices):
        REGISTER = "register", "Registering the new CA in AWS"
        WAVE = "wave", "Renewing devices"
        RETIRE = "retire", "Retiring the old CA"
        FINISHED = "finished", "Finished"

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Status.RUNNING: frozenset({Status.PAUSED, Status.DONE, Status.FAILED}),
        Status.PAUSED: frozenset({Status.RUNNING, Status.FAILED}),
        Status.DONE: frozenset(),
        Status.FAILED: frozenset(),
    }
    UNFINISHED = (Status.RUNNING, Status.PAUSED)

    from_ca = models.ForeignKey(
        CertificateAuthority, on_delete=models.PROTECT, related_name="+", verbose_name="from CA"
    )
    to_ca = models.ForeignKey(
        CertificateAuthority, on_delete=models.PROTECT, related_name="+", verbose_name="to CA"
    )
    ca_password = EncryptedCharField("new CA password", max_length=256, blank=True, editable=False)
    rate_per_minute = models.PositiveIntegerField(
        "devices per minute",
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="How many devices the wave asks to renew per minute.",
    )
    failure_threshold = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1)],
        help_text="The wave pauses once this many devices failed to renew.",
    )
    renew_timeout_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(10_080)],
        help_text="A device that has not renewed this long after it was asked counts as failed.",
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.REGISTER)
    job = models.OneToOneField(Job, on_delete=models.PROTECT, related_name="ca_rotation")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    wave_started_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the pacing window (reset on resume)."
    )
    marked_in_window = models.PositiveIntegerField(default=0)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    total = models.PositiveIntegerField(
        default=0, help_text="Active certificates under the old CA when the wave started."
    )
    result = models.CharField(max_length=500, blank=True)
    aws_ca_certificate_id = models.CharField(
        "AWS id of the new CA", max_length=64, blank=True, editable=False
    )
    from_aws_ca_certificate_id = models.CharField(
        "AWS id of the old CA", max_length=64, blank=True, editable=False
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "CA rotation"
        permissions = [("run_ca_rotation", "Can rotate and retire CAs")]
        constraints = [
            models.UniqueConstraint(
                fields=["from_ca"],
                condition=Q(status__in=["running", "paused"]),
                name="one_unfinished_rotation_per_ca",
            ),
            models.CheckConstraint(
                condition=~Q(from_ca=models.F("to_ca")), name="rotation_to_another_ca"
            ),
        ]

    def __str__(self) -> str:
        return f"CA rotation #{self.pk}: {self.from_ca} -> {self.to_ca}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @classmethod
    def statuses_before(cls, target: str) -> list[str]:
        return sorted(s for s, targets in cls.TRANSITIONS.items() if target in targets)


class CaRotationItem(models.Model):
    """One certificate under the old CA that the wave asked to renew, and how it ended."""

    class State(models.TextChoices):
        ASKED = "asked", "Asked to renew"
        RENEWED = "renewed", "Renewed"
        FAILED = "failed", "Failed"

    rotation = models.ForeignKey(CaRotation, on_delete=models.CASCADE, related_name="items")
    certificate = models.ForeignKey(IssuedCertificate, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.ASKED, db_index=True
    )
    asked_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rotation", "certificate"], name="one_item_per_certificate"
            )
        ]

    def __str__(self) -> str:
        return f"{self.certificate} ({self.get_state_display()})"


class CaRetirement(models.Model):
    """A CA set INACTIVE in AWS (auto-registration off) and then archived; its Job does it."""

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="+")
    job = models.OneToOneField(Job, on_delete=models.PROTECT, related_name="ca_retirement")
    rotation = models.ForeignKey(
        CaRotation, null=True, blank=True, on_delete=models.SET_NULL, related_name="retirements"
    )
    forced = models.BooleanField(default=False)
    active_certificates = models.PositiveIntegerField(
        default=0, help_text="Active certificates under the CA when retirement was asked for."
    )
    aws_ca_certificate_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "CA retirement"

    def __str__(self) -> str:
        return f"Retirement of CA {self.ca}"
