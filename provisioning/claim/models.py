"""Fleet provisioning by claim: the template + claim certificate the portal set up in AWS."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField, EncryptedTextField

from ..aws.models import iot_region_choices

template_name_validator = RegexValidator(
    r"^[0-9A-Za-z_-]{1,36}$",
    "A provisioning template name is 1-36 letters, digits, '_' or '-' (AWS IoT's rule).",
)
thing_prefix_validator = RegexValidator(
    r"^[A-Za-z0-9:_-]{0,64}$", "A thing-name prefix is up to 64 letters, digits, ':', '_' or '-'."
)
role_arn_validator = RegexValidator(
    r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$",
    "A role ARN looks like arn:aws:iam::123456789012:role/NAME.",
)


def _region_choices() -> list[tuple[str, str]]:
    return iot_region_choices()


class ClaimSetup(models.Model):
    """One FLEET_PROVISIONING template with its claim certificate and policies.

    A station that cannot reach the portal gets the claim bundle (claim certificate + key,
    template name, endpoint) and provisions itself over MQTT. The claim key is stored
    encrypted and leaves the portal only through the audited bundle download.
    """

    class Status(models.TextChoices):
        NEW = "new", "Not set up yet"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    template_name = models.CharField(
        max_length=36, unique=True, validators=[template_name_validator]
    )
    region = models.CharField(max_length=32, choices=_region_choices)
    access_key = models.ForeignKey(
        "provisioning.AccessKey", on_delete=models.PROTECT, related_name="claim_setups"
    )
    role_arn = EncryptedCharField(
        "provisioning role ARN",
        max_length=600,
        validators=[role_arn_validator],
        help_text="The IAM role AWS IoT assumes to create things and attach policies.",
    )
    thing_name_prefix = models.CharField(
        max_length=64,
        blank=True,
        validators=[thing_prefix_validator],
        help_text="Thing name = prefix + SerialNumber.",
    )
    thing_type = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NEW)
    job = models.ForeignKey(
        "provisioning.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint = models.CharField(max_length=253, blank=True, editable=False)
    template_arn = models.CharField(max_length=300, blank=True, editable=False)
    template_version_id = models.PositiveIntegerField(null=True, blank=True, editable=False)
    claim_certificate_id = models.CharField(max_length=64, blank=True, editable=False)
    claim_certificate_arn = models.CharField(max_length=300, blank=True, editable=False)
    claim_certificate_pem = models.TextField(blank=True, editable=False)
    claim_private_key_pem = EncryptedTextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_downloaded_at = models.DateTimeField(null=True, blank=True, editable=False)
    download_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        app_label = "provisioning"
        ordering = ["template_name"]
        verbose_name = "fleet provisioning (claim) setup"
        permissions = [
            ("download_claim_bundle", "Can download the claim bundle (it holds the claim key)"),
        ]

    def __str__(self) -> str:
        return self.template_name

    @property
    def device_policy_name(self) -> str:
        return f"{self.template_name}-device"

    @property
    def claim_policy_name(self) -> str:
        return f"{self.template_name}-claim"

    @property
    def has_claim_key(self) -> bool:
        return bool(self.claim_private_key_pem)
