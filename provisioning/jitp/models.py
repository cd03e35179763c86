"""The per-site AWS IoT / JITP settings: inputs staff edit, outputs the JITP job writes."""

from __future__ import annotations

import re

from django.contrib.sites.models import Site
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from encrypted_model_fields.fields import EncryptedCharField

from signing.crypto import parse_dn

from ..aws.models import AccessKey, iot_region_choices
from ..jobs.models import Job

iam_role_arn_validator = RegexValidator(
    r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$",
    "An IAM role ARN looks like arn:aws:iam::123456789012:role/JITPRole.",
)
thing_name_validator = RegexValidator(
    r"^[a-zA-Z0-9:_-]{1,128}$",
    "Use 1-128 letters, digits, ':', '_' or '-'.",
)
thing_group_list_validator = RegexValidator(
    r"^\s*([a-zA-Z0-9:_-]{1,128}\s*(,\s*[a-zA-Z0-9:_-]{1,128}\s*)*)?$",
    "Thing groups are a comma-separated list of names (letters, digits, ':', '_', '-').",
)


class JitpSettings(models.Model):
    """The per-site AWS IoT / JITP setup parameters (the SPEC's "CA provisioning parameters").

    Inputs are edited by staff or `manage.py setup_jitp`; the outputs are written only by the
    JITP job and shown read-only. The CA password is an encrypted, write-only field so the
    worker can look it up by the settings row: it never travels in task arguments.
    """

    class CaSource(models.TextChoices):
        GENERATE = "generate", "Generate a new CA"
        EXISTING = "existing", "Use a CA from the key store"

    class PolicyMode(models.TextChoices):
        LEAST_PRIVILEGE = (
            "least_privilege",
            ("Least privilege: own client id and things/<thing name>/… topics only"),
        )
        SEVEN_ACTIONS_ALL = (
            "seven_actions_all",
            ("The reference product's seven actions on all resources"),
        )

    class CertificateMode(models.TextChoices):
        DEFAULT = "DEFAULT", "DEFAULT (with a verification certificate)"
        SNI_ONLY = "SNI_ONLY", "SNI_ONLY (no verification certificate)"

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="jitp_settings")
    access_key = models.ForeignKey(
        AccessKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The AWS access key the JITP job signs its calls with.",
    )
    region = models.CharField(
        max_length=32,
        blank=True,
        choices=iot_region_choices,
        help_text="Blank: the AWS service's region.",
    )
    role_arn = EncryptedCharField(
        "IAM role ARN",
        max_length=600,
        blank=True,
        validators=[iam_role_arn_validator],
        help_text="The role AWS IoT assumes to provision things (AWSIoTThingsRegistration).",
    )
    ca_source = models.CharField(
        "CA source", max_length=10, choices=CaSource.choices, default=CaSource.GENERATE
    )
    ca_alias = models.CharField(
        "CA alias",
        max_length=64,
        default="jitp-ca",
        help_text="Generate: the alias of the new CA. Existing: the key-store alias to use.",
    )
    ca_password = EncryptedCharField(
        "CA password",
        max_length=256,
        blank=True,
        help_text="Protects (or opens) the CA's private key. Write-only.",
    )
    ca_dn = models.CharField(
        "new CA distinguished name",
        max_length=400,
        blank=True,
        help_text="CN=…,O=…,OU=…,L=…,ST=…,C=… (any subset, CN required).",
    )
    ca_key_type = models.CharField(
        "new CA key type",
        max_length=10,
        default="ec-p256",
        choices=[
            ("ec-p256", "EC P256"),
            ("ec-p384", "EC P384"),
            ("rsa-2048", "RSA 2048"),
            ("rsa-3072", "RSA 3072"),
            ("rsa-4096", "RSA 4096"),
        ],
    )
    ca_validity_days = models.PositiveIntegerField("new CA validity (days)", default=730)
    overwrite_ca = models.BooleanField(
        "overwrite an existing CA with the same alias",
        default=False,
    )
    template_name = models.CharField(
        max_length=36,
        blank=True,
        validators=[
            RegexValidator(r"^[0-9A-Za-z_-]+$", "A template name is letters, digits, '_' or '-'.")
        ],
        help_text="Blank: the template goes inline in the CA's registration config "
        "(templateBody + roleArn). Set: a named JITP provisioning template.",
    )
    thing_type_name = models.CharField(
        "thing type", max_length=128, blank=True, validators=[thing_name_validator]
    )
    thing_groups = models.CharField(
        max_length=1000,
        blank=True,
        validators=[thing_group_list_validator],
        help_text="Comma-separated names of existing thing groups.",
    )
    billing_group = models.CharField(max_length=128, blank=True, validators=[thing_name_validator])
    attributes = models.JSONField(
        default=dict,
        blank=True,
        help_text='Thing attributes, e.g. {"site": "plant-1", "country": '
        '"AWS::IoT::Certificate::Country"}: a value that names a certificate field '
        "takes that field of each device certificate.",
    )
    policy_mode = models.CharField(
        max_length=20, choices=PolicyMode.choices, default=PolicyMode.LEAST_PRIVILEGE
    )
    certificate_mode = models.CharField(
        max_length=10, choices=CertificateMode.choices, default=CertificateMode.DEFAULT
    )
    # Outputs (written by the JITP job only).
    registered_ca_alias = models.CharField(max_length=64, blank=True, editable=False)
    registered_ca_fingerprint = models.CharField(max_length=95, blank=True, editable=False)
    generated_ca_fingerprint = models.CharField(
        max_length=95,
        blank=True,
        editable=False,
        help_text="The CA the JITP job generated last: a re-run reuses it instead of "
        "refusing the alias, even when the earlier run failed after generating.",
    )
    aws_ca_certificate_id = models.CharField(
        "AWS CA certificate id", max_length=64, blank=True, editable=False
    )
    data_endpoint = models.CharField(
        "MQTT data endpoint", max_length=255, blank=True, editable=False
    )
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_result = models.CharField(max_length=500, blank=True, editable=False)
    last_job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        verbose_name = "AWS IoT / JITP settings"
        verbose_name_plural = "AWS IoT / JITP settings"
        permissions = [("run_jitp_setup", "Can run the JITP setup job")]

    def __str__(self) -> str:
        return f"AWS IoT / JITP settings ({self.site})"

    def thing_group_list(self) -> list[str]:
        return [g.strip() for g in self.thing_groups.split(",") if g.strip()]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.attributes, dict):
            errors["attributes"] = "Attributes are a JSON object of name: value pairs."
        else:
            if len(self.attributes) > 50:
                errors["attributes"] = "A thing has at most 50 attributes."
            for name, value in self.attributes.items():
                if not re.fullmatch(r"[a-zA-Z0-9_.,@/:#-]{1,128}", str(name)):
                    errors["attributes"] = f"'{name}' is not a valid attribute name."
                elif not isinstance(value, str) or not re.fullmatch(
                    r"[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}", value
                ):
                    errors["attributes"] = (
                        f"The value of attribute '{name}' must be a string of letters, digits "
                        "and _.,@/:#=[]-."
                    )
        if self.ca_source == self.CaSource.GENERATE and self.ca_dn:
            try:
                parse_dn(self.ca_dn)
            except ValueError as exc:
                errors["ca_dn"] = str(exc)
        if not 1 <= self.ca_validity_days <= 36500:
            errors["ca_validity_days"] = "Validity must be between 1 and 36500 days."
        if errors:
            raise ValidationError(errors)
