"""Cross-cutting models: the audit trail, staff API tokens and the encryption canary."""

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
