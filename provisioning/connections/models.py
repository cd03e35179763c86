"""The Connection model: an AWS IoT Core account endpoint plus the topics devices use there.

Imported from provisioning/models.py so Django registers it in the provisioning app.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedTextField

from ..aws.models import iot_region_choices
from .topics import TopicPatternError, validate_downlink_pattern, validate_uplink_pattern

connection_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$",
    "Use 1-100 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit.",
)
thing_type_validator = RegexValidator(
    r"^[A-Za-z0-9:_-]{1,128}$",
    "A thing type name is 1-128 letters, digits, ':', '_' or '-' (AWS IoT's rule).",
)
account_prefix_validator = RegexValidator(
    r"^[a-z0-9]{1,63}$",
    "An account endpoint prefix is lower-case letters and digits, such as a1b2c3d4e5f6g7.",
)
certificate_id_validator = RegexValidator(
    r"^[0-9a-f]{64}$", "An AWS IoT certificate id is 64 lower-case hexadecimal characters."
)

#: ``<prefix>[-ats].iot.<region>.amazonaws.com[.cn]``
ENDPOINT_RE = re.compile(
    r"^(?P<prefix>[a-z0-9]{1,63})(?P<ats>-ats)?\.iot\.(?P<region>[a-z0-9-]+)"
    r"\.amazonaws\.com(?:\.cn)?$"
)


def endpoint_for(prefix: str, region: str) -> str:
    """The ATS data endpoint of an account prefix in a region."""
    return f"{prefix}-ats.iot.{region}.amazonaws.com"


def _region_choices() -> list[tuple[str, str]]:
    return iot_region_choices()


class Connection(models.Model):
    """Where a station's bound devices publish uplinks and subscribe for downlinks.

    The certificate, private key and the access key's secret are write-only: they are
    stored encrypted and no door (API, admin, log) ever renders them.
    """

    name = models.CharField(max_length=100, unique=True, validators=[connection_name_validator])
    description = models.CharField(max_length=500, blank=True)
    region = models.CharField(max_length=32, choices=_region_choices)
    account_prefix = models.CharField(
        "account endpoint prefix",
        max_length=63,
        validators=[account_prefix_validator],
        help_text="The first label of the account's AWS IoT data endpoint.",
    )
    endpoint = models.CharField(
        max_length=253,
        editable=False,
        help_text="Derived: <prefix>-ats.iot.<region>.amazonaws.com.",
    )
    device_type = models.CharField(
        "thing type", max_length=128, blank=True, validators=[thing_type_validator]
    )
    access_key = models.ForeignKey(
        "provisioning.AccessKey", on_delete=models.PROTECT, related_name="connections"
    )
    certificate_id = models.CharField(
        max_length=64, blank=True, validators=[certificate_id_validator]
    )
    certificate_pem = EncryptedTextField(blank=True, editable=False)
    private_key_pem = EncryptedTextField(blank=True, editable=False)
    certificate_fingerprint = models.CharField(
        "certificate SHA-256 fingerprint", max_length=95, blank=True, editable=False
    )
    certificate_not_after = models.DateTimeField(null=True, blank=True, editable=False)
    uplink_topic_pattern = models.CharField(
        max_length=256, help_text="Publish topic; placeholders {station} {device} {thing} {point}."
    )
    downlink_topic_pattern = models.CharField(
        max_length=256,
        blank=True,
        help_text="Subscription filter (+ and # allowed as whole levels); empty: no downlinks.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        app_label = "provisioning"

    def __str__(self) -> str:
        return self.name

    @property
    def has_certificate(self) -> bool:
        return bool(self.certificate_pem)

    @property
    def has_private_key(self) -> bool:
        return bool(self.private_key_pem)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field, check in (
            ("uplink_topic_pattern", validate_uplink_pattern),
            ("downlink_topic_pattern", validate_downlink_pattern),
        ):
            value = getattr(self, field)
            if field == "downlink_topic_pattern" and not value:
                continue
            try:
                check(value)
            except TopicPatternError as exc:
                errors[field] = exc.detail
        if self.account_prefix and self.region:
            self.endpoint = endpoint_for(self.account_prefix, self.region)
        if errors:
            raise ValidationError(errors)
