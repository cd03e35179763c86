"""AWS service settings, access keys, the AWS API call log and background jobs."""
from __future__ import annotations

import functools
from datetime import datetime, timedelta

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


# ============================================================================================
# BEGIN AWS IoT / JITP settings (issue 3)
# ============================================================================================
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
        LEAST_PRIVILEGE = "least_privilege", (
            "Least privilege: own client id and things/<thing name>/… topics only"
        )
        SEVEN_ACTIONS_ALL = "seven_actions_all", (
            "The reference product's seven actions on all resources"
        )

    class CertificateMode(models.TextChoices):
        DEFAULT = "DEFAULT", "DEFAULT (with a verification certificate)"
        SNI_ONLY = "SNI_ONLY", "SNI_ONLY (no verification certificate)"

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="jitp_settings")
    access_key = models.ForeignKey(
        AccessKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The AWS access key the JITP job signs its calls with.",
    )
    region = models.CharField(
        max_length=32, blank=True, choices=iot_region_choices,
        help_text="Blank: the AWS service's region.",
    )
    role_arn = EncryptedCharField(
        "IAM role ARN", max_length=600, blank=True, validators=[iam_role_arn_validator],
        help_text="The role AWS IoT assumes to provision things (AWSIoTThingsRegistration).",
    )
    ca_source = models.CharField("CA source", max_length=10, choices=CaSource.choices,
                                 default=CaSource.GENERATE)
    ca_alias = models.CharField(
        "CA alias", max_length=64, default="jitp-ca",
        help_text="Generate: the alias of the new CA. Existing: the key-store alias to use.",
    )
    ca_password = EncryptedCharField(
        "CA password", max_length=256, blank=True,
        help_text="Protects (or opens) the CA's private key. Write-only.",
    )
    ca_dn = models.CharField(
        "new CA distinguished name", max_length=400, blank=True,
        help_text="CN=…,O=…,OU=…,L=…,ST=…,C=… (any subset, CN required).",
    )
    ca_key_type = models.CharField("new CA key type", max_length=10, default="ec-p256",
                                   choices=[("ec-p256", "EC P256"), ("ec-p384", "EC P384"),
                                            ("rsa-2048", "RSA 2048"), ("rsa-3072", "RSA 3072"),
                                            ("rsa-4096", "RSA 4096")])
    ca_validity_days = models.PositiveIntegerField("new CA validity (days)", default=730)
    overwrite_ca = models.BooleanField(
        "overwrite an existing CA with the same alias", default=False,
    )
    template_name = models.CharField(
        max_length=36, blank=True,
        validators=[RegexValidator(r"^[0-9A-Za-z_-]+$",
                                   "A template name is letters, digits, '_' or '-'.")],
        help_text="Blank: the template goes inline in the CA's registration config "
                  "(templateBody + roleArn). Set: a named JITP provisioning template.",
    )
    thing_type_name = models.CharField("thing type", max_length=128, blank=True,
                                       validators=[thing_name_validator])
    thing_groups = models.CharField(max_length=1000, blank=True,
                                    validators=[thing_group_list_validator],
                                    help_text="Comma-separated names of existing thing groups.")
    billing_group = models.CharField(max_length=128, blank=True,
                                     validators=[thing_name_validator])
    attributes = models.JSONField(
        default=dict, blank=True,
        help_text='Thing attributes, e.g. {"site": "plant-1", "country": '
                  '"AWS::IoT::Certificate::Country"}: a value that names a certificate field '
                  "takes that field of each device certificate.",
    )
    policy_mode = models.CharField(max_length=20, choices=PolicyMode.choices,
                                   default=PolicyMode.LEAST_PRIVILEGE)
    certificate_mode = models.CharField(max_length=10, choices=CertificateMode.choices,
                                        default=CertificateMode.DEFAULT)
    # Outputs (written by the JITP job only).
    registered_ca_alias = models.CharField(max_length=64, blank=True, editable=False)
    registered_ca_fingerprint = models.CharField(max_length=95, blank=True, editable=False)
    generated_ca_fingerprint = models.CharField(
        max_length=95, blank=True, editable=False,
        help_text="The CA the JITP job generated last: a re-run reuses it instead of "
                  "refusing the alias, even when the earlier run failed after generating.",
    )
    aws_ca_certificate_id = models.CharField("AWS CA certificate id", max_length=64,
                                             blank=True, editable=False)
    data_endpoint = models.CharField("MQTT data endpoint", max_length=255, blank=True,
                                     editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_result = models.CharField(max_length=500, blank=True, editable=False)
    last_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", editable=False)

    class Meta:
        verbose_name = "AWS IoT / JITP settings"
        verbose_name_plural = "AWS IoT / JITP settings"
        permissions = [("run_jitp_setup", "Can run the JITP setup job")]

    def __str__(self) -> str:
        return f"AWS IoT / JITP settings ({self.site})"

    def thing_group_list(self) -> list[str]:
        return [g.strip() for g in self.thing_groups.split(",") if g.strip()]

    def clean(self) -> None:
        import re

        from django.core.exceptions import ValidationError

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
            from signing.crypto import parse_dn

            try:
                parse_dn(self.ca_dn)
            except ValueError as exc:
                errors["ca_dn"] = str(exc)
        if not 1 <= self.ca_validity_days <= 36500:
            errors["ca_validity_days"] = "Validity must be between 1 and 36500 days."
        if errors:
            raise ValidationError(errors)


# ============================================================================================
# END AWS IoT / JITP settings (issue 3)
# ============================================================================================
# === Fleet install (fleet helper) ============================================================
# One FleetInstall per fleet-install Job, one FleetInstallStation per selected station. The
# services live in provisioning/fleet.py; the per-station state machine lives here.


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
        "certificate password", max_length=128, blank=True, editable=False,
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
        Status.QUEUED: {Status.DELIVERED, Status.ONBOARDING, Status.AWAITING_APPROVAL,
                        Status.CONNECTED, Status.FAILED, Status.CANCELLED},
        Status.DELIVERED: {Status.ONBOARDING, Status.AWAITING_APPROVAL, Status.CONNECTED,
                           Status.FAILED, Status.CANCELLED},
        Status.ONBOARDING: {Status.AWAITING_APPROVAL, Status.CONNECTED, Status.FAILED,
                            Status.CANCELLED},
        Status.AWAITING_APPROVAL: {Status.ONBOARDING, Status.CONNECTED, Status.FAILED,
                                   Status.CANCELLED},
        Status.CONNECTED: set(),
        Status.FAILED: {Status.QUEUED},
        Status.CANCELLED: set(),
    }
    TERMINAL = {Status.CONNECTED, Status.FAILED, Status.CANCELLED}
    # Rows that hold a concurrency slot once placed in the desired configuration.
    IN_FLIGHT = {Status.QUEUED, Status.DELIVERED, Status.ONBOARDING}

    install = models.ForeignKey(FleetInstall, on_delete=models.CASCADE, related_name="stations")
    station = models.ForeignKey("devices.Station", on_delete=models.CASCADE,
                                related_name="fleet_install_rows")
    device = models.ForeignKey("devices.MqttDevice", null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="fleet_install_rows")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
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
            models.UniqueConstraint(fields=["install", "station"],
                                    name="unique_station_per_fleet_install")
        ]

    def __str__(self) -> str:
        return f"{self.station} in {self.install.job}"

    def can_move_to(self, status: str) -> bool:
        return status in self.TRANSITIONS[self.status]
# === end of fleet install block ==============================================================

# --- connections and fleet provisioning by claim (issue 7) -------------------------------------
from .claim_models import ClaimSetup  # noqa: E402, F401
from .connections.models import Connection  # noqa: E402, F401

# --- end connections and claim ------------------------------------------------------------------
