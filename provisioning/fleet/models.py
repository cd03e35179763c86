"""Fleet install rows: one FleetInstall per fleet-install Job (its parameters), one
FleetInstallStation per selected station, with the per-station state machine."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField

from ..jobs.models import Job


class FleetInstallManager(models.Manager["FleetInstall"]):
    """Installs without their plan (an entry per station, hundreds of KiB for a large
    fleet): only a dry run's pages read it, and it loads when they do."""

    def get_queryset(self) -> models.QuerySet[FleetInstall]:
        return super().get_queryset().defer("plan")


class FleetInstall(models.Model):
    """The parameters of one "Install AWS MQTT device" job (the same device on every station)."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="fleet_install")
    device_name = models.CharField(max_length=63)
    signing_profile = models.ForeignKey(
        "signing.SigningProfile", on_delete=models.PROTECT, related_name="fleet_installs"
    )
    endpoint = models.CharField("broker endpoint", max_length=253)
    port = models.PositiveIntegerField(default=8883)
    key_password = EncryptedCharField(
        "certificate password",
        max_length=128,
        blank=True,
        editable=False,
        help_text="Protects the device key on each station; write-only.",
    )
    onboarding_comment = models.CharField(max_length=200, blank=True)
    concurrency = models.PositiveIntegerField(
        default=50,
        help_text="How many stations may be between placement and CSR submission at once.",
    )
    timeout = models.DurationField(
        help_text="Stations that have not connected this long after the start are failed."
    )
    dry_run = models.BooleanField(default=False)
    plan = models.JSONField(default=list, blank=True, help_text="Per-station plan (dry runs).")
    created_at = models.DateTimeField(default=timezone.now)

    objects = FleetInstallManager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Install '{self.device_name}' ({self.job})"

    @property
    def deadline(self) -> datetime:
        start = self.job.started_at or self.job.created_at
        return start + self.timeout


class FleetInstallStation(models.Model):
    """One station's progress in a fleet install; moves only along TRANSITIONS."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        DELIVERED = "delivered", "Delivered"
        ONBOARDING = "onboarding", "Onboarding"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        CONNECTED = "connected", "Connected"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    # The one place that says which moves are allowed. Progress may skip steps (a report can
    # arrive late); failed rows may be queued again by a retry.
    TRANSITIONS: dict[str, set[str]] = {
        Status.QUEUED: {
            Status.DELIVERED,
            Status.ONBOARDING,
            Status.AWAITING_APPROVAL,
            Status.CONNECTED,
            Status.FAILED,
            Status.CANCELLED,
        },
        Status.DELIVERED: {
            Status.ONBOARDING,
            Status.AWAITING_APPROVAL,
            Status.CONNECTED,
            Status.FAILED,
            Status.CANCELLED,
        },
        Status.ONBOARDING: {
            Status.AWAITING_APPROVAL,
            Status.CONNECTED,
            Status.FAILED,
            Status.CANCELLED,
        },
        Status.AWAITING_APPROVAL: {
            Status.ONBOARDING,
            Status.CONNECTED,
            Status.FAILED,
            Status.CANCELLED,
        },
        Status.CONNECTED: set(),
        Status.FAILED: {Status.QUEUED},
        Status.CANCELLED: set(),
    }
    TERMINAL = {Status.CONNECTED, Status.FAILED, Status.CANCELLED}
    # Rows that hold a concurrency slot once placed in the desired configuration.
    IN_FLIGHT = {Status.QUEUED, Status.DELIVERED, Status.ONBOARDING}

    install = models.ForeignKey(FleetInstall, on_delete=models.CASCADE, related_name="stations")
    station = models.ForeignKey(
        "devices.Station", on_delete=models.CASCADE, related_name="fleet_install_rows"
    )
    device = models.ForeignKey(
        "devices.MqttDevice",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fleet_install_rows",
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    created_device = models.BooleanField(
        default=False, help_text="This install created the device (so a cancel may remove it)."
    )
    attempts = models.PositiveIntegerField(default=0)
    note = models.CharField(max_length=300, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When the device entered the station's desired config."
    )
    delivered_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    status_changed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["station__name"]
        verbose_name = "fleet install station"
        constraints = [
            models.UniqueConstraint(
                fields=["install", "station"], name="unique_station_per_fleet_install"
            )
        ]

    def __str__(self) -> str:
        return f"{self.station} in {self.install.job}"

    def can_move_to(self, status: str) -> bool:
        return status in self.TRANSITIONS[self.status]

    @classmethod
    def sources_of(cls, status: str) -> set[str]:
        """The statuses a row may move to ``status`` from: TRANSITIONS read backwards, for the
        ``UPDATE … WHERE status IN (…)`` that makes each move (fleet/transitions.py)."""
        return {source for source, targets in cls.TRANSITIONS.items() if status in targets}
