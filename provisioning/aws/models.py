"""AWS service settings, access keys and the AWS API call log."""

from __future__ import annotations

import functools
from datetime import timedelta

from django.conf import settings
from django.contrib.sites.models import Site
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField


@functools.cache
def iot_region_choices() -> list[tuple[str, str]]:
    """Regions where AWS IoT Core exists, from botocore's own endpoint data (read once)."""
    import boto3

    regions = boto3.session.Session().get_available_regions("iot")
    return [(r, r) for r in sorted(regions)]


class AwsService(models.Model):
    """Per-site AWS settings. When disabled, no request leaves the portal."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="aws_service")
    enabled = models.BooleanField(
        default=True, help_text="When off, every AWS call is refused before it leaves the portal."
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
    action = models.ForeignKey(
        "provisioning.AwsAction",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="calls",
        help_text="The outbox row this call carried out, if any.",
    )

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "AWS API call"

    def __str__(self) -> str:
        return f"{self.service}.{self.operation} {self.outcome}"

    @property
    def outcome(self) -> str:
        return "error" if self.error_code else "ok"
