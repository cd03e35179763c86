"""AWS service settings, access keys, the AWS API call log and background jobs."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.sites.models import Site
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField


def iot_region_choices() -> list[tuple[str, str]]:
    """Regions where AWS IoT Core exists, from botocore's own endpoint data."""
    import boto3

    regions = boto3.session.Session().get_available_regions("iot")
    return [(r, r) for r in sorted(regions)]


class AwsService(models.Model):
    """Per-site AWS settings. When disabled, no request leaves the portal."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="aws_service")
    enabled = models.BooleanField(
        default=False, help_text="When off, every AWS call is refused before it leaves the portal."
    )
    region = models.CharField(max_length=32, default="eu-west-1", choices=iot_region_choices)

    class Meta:
        verbose_name = "AWS service"
        verbose_name_plural = "AWS service"

    def __str__(self) -> str:
        return f"AWS service ({self.region}, {'enabled' if self.enabled else 'disabled'})"


access_key_id_validator = RegexValidator(
    r"^(AKIA|ASIA)[A-Z0-9]{16}$",
    "An access key id is AKIA or ASIA followed by 16 upper-case letters or digits.",
)


class AccessKey(models.Model):
    """An AWS access key whose secret is kept encrypted, and only for its storage period."""

    class StorePeriod(models.TextChoices):
        HOUR_1 = "1h", "1 hour"
        HOURS_8 = "8h", "8 hours"
        DAY_1 = "1d", "1 day"
        DAYS_7 = "7d", "7 days"
        DAYS_30 = "30d", "30 days"

    PERIODS = {
        "1h": timedelta(hours=1),
        "8h": timedelta(hours=8),
        "1d": timedelta(days=1),
        "7d": timedelta(days=7),
        "30d": timedelta(days=30),
    }

    access_key_id = models.CharField(
        "access key id", max_length=20, unique=True, validators=[access_key_id_validator]
    )
    secret = EncryptedCharField(max_length=40, null=True, blank=True, editable=False)
    store_for = models.CharField("storage period", max_length=4, choices=StorePeriod.choices)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    purge_at = models.DateTimeField("purge date", db_index=True)
    purged_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [("test_accesskey", "Can test an access key against AWS STS")]

    def __str__(self) -> str:
        return self.access_key_id

    @property
    def is_stored(self) -> bool:
        return self.secret is not None


class AwsApiCall(models.Model):
    """One AWS API call the portal made, with secrets redacted (read-only audit)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    service = models.CharField(max_length=40)
    operation = models.CharField(max_length=80, db_index=True)
    region = models.CharField(max_length=32, blank=True)
    access_key_id = models.CharField(max_length=20, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=80, blank=True, db_index=True)
    error_message = models.CharField(max_length=500, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=80, blank=True)
    retry_attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "AWS API call"

    def __str__(self) -> str:
        return f"{self.service}.{self.operation} {self.outcome}"

    @property
    def outcome(self) -> str:
        return "error" if self.error_code else "ok"


class Job(models.Model):
    """A long-running background job with an append-only log (JITP setup, fleet install…)."""

    class Kind(models.TextChoices):
        JITP_SETUP = "jitp_setup", "JITP setup"
        FLEET_INSTALL = "fleet_install", "Fleet install"
        CLAIM_SETUP = "claim_setup", "Fleet provisioning (claim) setup"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}

    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress_total = models.PositiveIntegerField(default=0)
    progress_done = models.PositiveIntegerField(default=0)
    progress_failed = models.PositiveIntegerField(default=0)
    result = models.CharField(max_length=500, blank=True, help_text="One sentence outcome.")
    error_code = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def percent(self) -> int:
        if self.progress_total == 0:
            return 100 if self.is_finished else 0
        return int(100 * (self.progress_done + self.progress_failed) / self.progress_total)


class JobLogLine(models.Model):
    """One line of a job's log; append-only."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_lines")
    at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.level} {self.message}"



# --- connections and fleet provisioning by claim (issue 7) -------------------------------------
from .claim_models import ClaimSetup  # noqa: E402, F401
from .connections.models import Connection  # noqa: E402, F401

# --- end connections and claim ------------------------------------------------------------------
