"""Key store (certificate authorities) of the signing service."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedTextField

from .crypto import KEY_TYPE_CHOICES

alias_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "An alias is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
)


class CertificateAuthority(models.Model):
    """A CA in the key store: certificate plus its password-protected private key.

    The private key is PKCS#8 encrypted with the entry's password, and that blob is stored
    in an encrypted field: the database alone gives nothing, the field key alone gives an
    encrypted key.
    """

    class Source(models.TextChoices):
        GENERATED = "generated", "Generated"
        IMPORTED = "imported", "Imported"

    alias = models.CharField(max_length=64, unique=True, validators=[alias_validator])
    certificate_pem = models.TextField("certificate (PEM)")
    private_key_pem = EncryptedTextField(editable=False)
    fingerprint_sha256 = models.CharField("SHA-256 fingerprint", max_length=95, db_index=True)
    subject = models.CharField(max_length=500)
    serial = models.CharField(max_length=100)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    key_type = models.CharField(max_length=10, choices=KEY_TYPE_CHOICES)
    source = models.CharField(max_length=10, choices=Source.choices)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "certificate authority"
        verbose_name_plural = "key store (certificate authorities)"
        ordering = ["alias"]

    def __str__(self) -> str:
        return self.alias

    @property
    def is_expired(self) -> bool:
        return self.not_after <= timezone.now()
