"""Stations (the fleet) and the MQTT devices installed on them."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
    "Use 1-63 letters, digits, '_' or '-', starting with a letter or digit (the name ends up "
    "in certificate names, aliases and MQTT topics).",
)


class Station(models.Model):
    """A field controller in the fleet; it reaches the portal through its agent and token."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.CharField(max_length=200, blank=True)
    site = models.CharField(max_length=100, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True, db_index=True)
    agent_version = models.CharField(max_length=40, blank=True)
    reported_state = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MqttDevice(models.Model):
    """An MQTT device (one per station and device name), onboarded with its own key."""

    class Status(models.TextChoices):
        PENDING_INSTALL = "pending_install", "Pending install"
        INSTALLED = "installed", "Installed"
        ONBOARDING = "onboarding", "Onboarding"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        CERTIFICATE_ISSUED = "certificate_issued", "Certificate issued"
        CONNECTED = "connected", "Connected"
        ERROR = "error", "Error"
        # Its certificate was revoked; only a new onboarding request that staff approve
        # brings it back (a new certificate makes it "certificate issued" again).
        REVOKED = "revoked", "Revoked"

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=63, validators=[name_validator])
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING_INSTALL, db_index=True
    )
    endpoint = models.CharField("broker endpoint", max_length=253, blank=True)
    port = models.PositiveIntegerField(default=8883)
    client_id = models.CharField(
        max_length=128, blank=True, help_text="The certificate's CN, filled when it arrives."
    )
    signing_profile = models.ForeignKey(
        "signing.SigningProfile",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="devices",
    )
    key_password = EncryptedCharField(
        "certificate password",
        max_length=128,
        blank=True,
        editable=False,
        help_text="Protects the device key on the station; delivered only to that station.",
    )
    onboarding_comment = models.CharField(max_length=200, blank=True)
    current_certificate = models.ForeignKey(
        "signing.IssuedCertificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    last_connected_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # The bound connection gives the device its uplink/downlink topic patterns.
    connection = models.ForeignKey(
        "provisioning.Connection",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="devices",
        help_text="When set, the agent uses this connection's uplink/downlink topic patterns.",
    )

    class Meta:
        verbose_name = "MQTT device"
        ordering = ["station__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["station", "name"], name="unique_device_per_station")
        ]

    def __str__(self) -> str:
        return f"{self.station.name}/{self.name}"

    @property
    def certificate_alias(self) -> str:
        return f"aws_{self.name}"


class EnrollmentCode(models.Model):
    """A one-time code a station's agent exchanges for the station's API token.

    Only the SHA-256 of the normalised code is stored; a code is used at most once and
    expires. A station has at most one live code: making a new one ends the old.
    """

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="enrollment_codes")
    code_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_from = models.GenericIPAddressField(null=True, blank=True)
    created_by_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"enrolment code of {self.station.name} ({self.created_at:%Y-%m-%d %H:%M})"


class EnrollmentAttempt(models.Model):
    """One failed exchange of an enrolment code, for the per-address and global limits."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    address = models.GenericIPAddressField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"failed enrolment from {self.address or '?'} at {self.at:%Y-%m-%d %H:%M:%S}"
