"""Cross-cutting models: the audit trail, staff API tokens, the encryption canary, alert
channels and their per-condition state."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from encrypted_model_fields.fields import EncryptedCharField


class AuditEvent(models.Model):
    """Append-only record of who did what to which object (approve, sign, revoke, purge…)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(
        max_length=150,
        blank=True,
        help_text="Who acted when not a user: 'system', 'station st-001'.",
    )
    action = models.CharField(max_length=40, db_index=True)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.object_repr}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object):  # type: ignore[override]
        raise ValueError("Audit events are append-only.")


class ApiToken(models.Model):
    """A staff API token (stored as a SHA-256 hash, shown once on creation)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="First characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "staff API token"

    def __str__(self) -> str:
        return f"{self.user} {self.prefix}…"


class EncryptionCanary(models.Model):
    """One row encrypted with FIELD_ENCRYPTION_KEY; if it no longer decrypts, the key is wrong.

    django-encrypted-model-fields silently returns ciphertext on a wrong key; this row lets the
    portal refuse to start instead of handing ciphertext around as if it were a secret.
    """

    PLAINTEXT = "fleet-portal-encryption-canary"

    value = EncryptedCharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return "encryption canary"


class Heartbeat(models.Model):
    """The last time a background component proved it was alive (one row per component).

    ``portal.tasks.heartbeat`` (sent by beat every minute, run by a worker) stamps the
    ``worker`` row; the admin index warns when it is old.
    """

    name = models.CharField(max_length=40, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} alive at {self.at:%Y-%m-%d %H:%M:%S}"


class AlertChannel(models.Model):
    """Where alerts go (an email list or a signed webhook) and which conditions it receives.

    The condition keys come from the cockpit's registry (portal.cockpit.registry); the
    webhook secret is stored encrypted and never shown again once saved.
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook (JSON POST, HMAC-SHA256 signed)"

    name = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    email_to = models.CharField(
        "email recipients", max_length=500, blank=True, help_text="Comma-separated addresses."
    )
    webhook_url = models.URLField("webhook URL", max_length=500, blank=True)
    webhook_secret = EncryptedCharField(max_length=200, blank=True, editable=False)
    conditions = models.JSONField(
        default=list, blank=True, help_text="Keys of the alert conditions this channel receives."
    )
    station_unseen_minutes = models.PositiveIntegerField(
        default=60, help_text="A station not seen for this long counts as missing."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertState(models.Model):
    """Whether one condition holds for one subject, as far as one channel was told.

    One row per (channel, condition, subject): the alert goes out when the row starts firing
    (or its level rises) and once more when it clears. The unique constraint plus a row lock
    make two evaluations at once send each message once.
    """

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="states")
    condition = models.CharField(max_length=60)
    subject = models.CharField(max_length=200)
    firing = models.BooleanField(default=True)
    level = models.IntegerField(default=0)
    summary = models.CharField(max_length=500)
    first_fired_at = models.DateTimeField()
    last_sent_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-first_fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "condition", "subject"], name="unique_alert_state"
            )
        ]

    def __str__(self) -> str:
        return f"{self.condition} {self.subject} ({'firing' if self.firing else 'cleared'})"
