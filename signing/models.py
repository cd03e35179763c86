"""The signing service's data: the key store (certificate authorities), signing profiles,
onboarding requests, Common Name owners and issued certificates.

It passes 400 lines because it is the app's one models module: five models, each with its
choices, transitions and invariants beside its fields, as Django keeps them.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField, EncryptedTextField

from .crypto import KEY_TYPE_CHOICES, KeyType

alias_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "An alias is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
)


class CertificateAuthority(models.Model):
    """A CA in the key store: certificate plus its private key, in one of two backends.

    ``database``: the private key is PKCS#8 encrypted with the entry's password, and that
    blob is stored in an encrypted field: the database alone gives nothing, the field key
    alone gives an encrypted key. ``pkcs11``: the key was generated in an HSM token and
    never left it; the row names the token and the key.
    """

    class Source(models.TextChoices):
        GENERATED = "generated", "Generated"
        IMPORTED = "imported", "Imported"

    class KeyBackend(models.TextChoices):
        DATABASE = "database", "Database (encrypted with the CA password)"
        PKCS11 = "pkcs11", "PKCS#11 token (HSM)"

    alias = models.CharField(max_length=64, unique=True, validators=[alias_validator])
    certificate_pem = models.TextField("certificate (PEM)")
    private_key_pem = EncryptedTextField(editable=False, blank=True)
    key_backend = models.CharField(
        max_length=10, choices=KeyBackend.choices, default=KeyBackend.DATABASE
    )
    # Where a PKCS#11 key lives (the PIN comes from PKCS11_PIN, never from the database).
    pkcs11_token_label = models.CharField("PKCS#11 token label", max_length=32, blank=True)
    pkcs11_key_label = models.CharField("PKCS#11 key label", max_length=64, blank=True)
    pkcs11_key_id = models.CharField("PKCS#11 key id (hex)", max_length=64, blank=True)
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
    archived_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set when the CA was retired: it signs nothing more and no new profile may "
        "use it; its key stays in the key store.",
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

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


# JITP template parameter for each subject field a signing profile can put in certificates.
JITP_PARAMETER_FOR_FIELD = {
    "CN": "AWS::IoT::Certificate::CommonName",
    "C": "AWS::IoT::Certificate::Country",
    "O": "AWS::IoT::Certificate::Organization",
    "OU": "AWS::IoT::Certificate::OrganizationalUnit",
    "ST": "AWS::IoT::Certificate::StateName",
    "dnQualifier": "AWS::IoT::Certificate::DistinguishedNameQualifier",
    "serialNumber": "AWS::IoT::Certificate::SerialNumber",
}


def default_accepted_key_types() -> list[str]:
    """Every key type AWS IoT accepts for a device certificate: EC P-256/384/521, RSA >= 2048."""
    return [k.value for k in KeyType]


class SigningProfile(models.Model):
    """How device certificates are made: which CA, which subject, how long, how renewed."""

    class RenewalPolicy(models.TextChoices):
        AUTOMATIC = "automatic", "Automatic (signed without a human)"
        MANUAL = "manual", "Manual (renewals wait for approval)"

    name = models.CharField(max_length=64, unique=True, validators=[alias_validator])
    is_default = models.BooleanField(
        default=False,
        help_text="Used for CSRs of devices installed by hand (not by a fleet install).",
    )
    ca = models.ForeignKey(
        CertificateAuthority,
        on_delete=models.PROTECT,
        related_name="signing_profiles",
        verbose_name="CA",
    )
    ca_password = EncryptedCharField("CA password", max_length=256, editable=False, blank=True)
    cn_template = models.CharField(
        "Common Name template",
        max_length=128,
        default="{station}:{device}",
        help_text=(
            "Placeholders: {station}, {device}, {serial}; a ':' between two placeholders "
            "(names cannot contain it), so every CN names exactly one device."
        ),
    )
    country = models.CharField("Country (C)", max_length=2)
    organization = models.CharField("Organization (O)", max_length=64, blank=True)
    organizational_unit = models.CharField("Organizational unit (OU)", max_length=64, blank=True)
    locality = models.CharField("Locality (L)", max_length=64, blank=True)
    state = models.CharField("State (ST)", max_length=64, blank=True)
    dn_qualifier = models.CharField("dnQualifier", max_length=64, blank=True)
    serial_number = models.CharField("serialNumber", max_length=64, blank=True)
    validity_days = models.PositiveIntegerField(default=365)
    renew_at_percent = models.PositiveSmallIntegerField(
        default=67, help_text="Renew when this share of the lifetime has passed (2/3 by default)."
    )
    renewal_jitter_percent = models.PositiveSmallIntegerField(
        default=5,
        help_text="Random spread of the renewal point, so a fleet does not renew at once.",
    )
    accepted_key_types = models.JSONField(default=default_accepted_key_types)
    renewal_policy = models.CharField(
        max_length=10, choices=RenewalPolicy.choices, default=RenewalPolicy.AUTOMATIC
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def subject_fields(self) -> set[str]:
        """Short names of the subject fields this profile puts in every certificate."""
        fields = {"CN", "C"}
        optional = {
            "O": self.organization,
            "OU": self.organizational_unit,
            "L": self.locality,
            "ST": self.state,
            "dnQualifier": self.dn_qualifier,
            "serialNumber": self.serial_number,
        }
        return fields | {name for name, value in optional.items() if value}

    def jitp_parameters(self) -> set[str]:
        """The JITP template parameters a certificate of this profile can satisfy."""
        return {
            JITP_PARAMETER_FOR_FIELD[f]
            for f in self.subject_fields()
            if f in JITP_PARAMETER_FOR_FIELD
        }


class OnboardingRequest(models.Model):
    """A CSR a station sent for one of its devices; a row first, signed by a task.

    Its state machine::

        submit -> PENDING --approve--> APPROVED --sign--> ISSUED
                          --reject---> REJECTED      \\--> FAILED (with a sentence)

    Every statement that changes ``status`` filters on :meth:`statuses_before` of its
    target, so a row moves only along :attr:`TRANSITIONS`.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        ISSUED = "issued", "Issued"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    # Which status may become which: the one place the moves are listed.
    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Status.PENDING: frozenset({Status.APPROVED, Status.REJECTED}),
        Status.APPROVED: frozenset({Status.ISSUED, Status.FAILED}),
        Status.ISSUED: frozenset(),
        Status.REJECTED: frozenset(),
        Status.FAILED: frozenset(),
    }

    station = models.ForeignKey(
        "devices.Station", on_delete=models.CASCADE, related_name="onboarding_requests"
    )
    device = models.ForeignKey(
        "devices.MqttDevice", on_delete=models.CASCADE, related_name="onboarding_requests"
    )
    profile = models.ForeignKey(
        SigningProfile, on_delete=models.PROTECT, related_name="onboarding_requests"
    )
    comment = models.CharField(max_length=200, blank=True)
    csr_pem = models.TextField("CSR (PEM)")
    key_type = models.CharField(max_length=10)
    public_key_fingerprint = models.CharField(
        max_length=64, db_index=True, help_text="SHA-256 of the public key (SubjectPublicKeyInfo)."
    )
    is_renewal = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    decided_by_label = models.CharField(
        max_length=150,
        blank=True,
        help_text="Who decided when not a user: 'renewal policy (automatic)'.",
    )
    sign_enqueued_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="When signing was last handed to the worker; the sweeper re-enqueues stale ones.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_onboardingrequest", "Can approve or reject onboarding requests")]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="signing_request_created_idx"),
            # Signings per day (the dashboard) and their totals (metrics): index-only scans.
            models.Index(
                fields=["issued_at", "is_renewal"],
                condition=models.Q(status="issued"),
                name="signing_request_issued_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.device}"

    @classmethod
    def statuses_before(cls, target: str) -> list[str]:
        """The statuses :attr:`TRANSITIONS` allows to become ``target`` (sorted)."""
        return sorted(s for s, targets in cls.TRANSITIONS.items() if target in targets)


class CommonNameOwner(models.Model):
    """The device a Common Name belongs to: one row per CN ever issued, never reassigned.

    The CN is the AWS thing name (JITP) and the MQTT client id, so a CN that once named a
    device stays that device's, also after its certificates are superseded or revoked. The
    batch signing path claims each CN here (``INSERT … ON CONFLICT``) in the transaction
    that inserts the certificate; the unique CN makes two workers racing for one CN with
    different devices end with one owner. On PostgreSQL a foreign key from
    ``IssuedCertificate(common_name, device_id)`` to this table makes a certificate whose
    CN belongs to another device impossible.
    """

    common_name = models.CharField(max_length=128, unique=True)
    device = models.ForeignKey(
        "devices.MqttDevice", on_delete=models.CASCADE, related_name="common_names"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "Common Name owner"
        constraints = [
            models.UniqueConstraint(
                fields=["common_name", "device"], name="signing_cn_owner_cn_device"
            )
        ]

    def __str__(self) -> str:
        return self.common_name


class IssuedCertificate(models.Model):
    """A device certificate the portal signed. Never deleted: superseded or revoked."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUPERSEDED = "superseded", "Superseded"
        REVOKED = "revoked", "Revoked"

    device = models.ForeignKey(
        "devices.MqttDevice", on_delete=models.PROTECT, related_name="certificates"
    )
    request = models.OneToOneField(
        OnboardingRequest, on_delete=models.PROTECT, related_name="certificate"
    )
    profile = models.ForeignKey(SigningProfile, on_delete=models.PROTECT, related_name="+")
    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="+")
    serial = models.CharField(max_length=100, unique=True)
    common_name = models.CharField(max_length=128, db_index=True)
    subject = models.CharField(max_length=500)
    issuer = models.CharField(max_length=500)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    renew_after = models.DateTimeField(db_index=True)
    fingerprint_sha256 = models.CharField("SHA-256 fingerprint", max_length=95, unique=True)
    certificate_pem = models.TextField("certificate (PEM)")
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True
    )
    superseded_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(
        max_length=200, blank=True, help_text="RFC 5280 reason, e.g. keyCompromise."
    )
    revocation_comment = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    renewal_due_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="Set by check_renewals once renew_after has passed.",
    )
    renewal_forced_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Staff forced a renewal: accepted before renew_after from this time on.",
    )
    # The certificate's twin in AWS IoT: its id there (the SHA-256 of the DER, lower-case
    # hex, as AWS computes it) and what the portal last observed of it in AWS.
    aws_certificate_id = models.CharField(
        "AWS certificate id", max_length=64, blank=True, db_index=True
    )
    #: What AWS IoT reports as a certificate's status, and NOT_FOUND when it has none.
    AWS_STATUSES = (
        "ACTIVE",
        "INACTIVE",
        "REVOKED",
        "PENDING_ACTIVATION",
        "PENDING_TRANSFER",
        "REGISTER_INACTIVE",
        "NOT_FOUND",
    )
    aws_status = models.CharField("status in AWS", max_length=32, blank=True)
    aws_thing = models.CharField("attached to thing (AWS)", max_length=128, blank=True)
    aws_policies = models.JSONField("policies (AWS)", default=list, blank=True)
    aws_observed_at = models.DateTimeField("observed in AWS", null=True, blank=True)
    first_connected_at = models.DateTimeField(
        "first connection reported",
        null=True,
        blank=True,
        help_text="When the station's agent first reported a connection with this certificate.",
    )
    aws_note = models.CharField(
        "AWS note",
        max_length=300,
        blank=True,
        help_text="Why AWS's view differs from the portal's, when it does.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("revoke_issuedcertificate", "Can revoke issued certificates")]
        # The changelist's order; CN "contains" has a trigram index on PostgreSQL (migration).
        indexes = [
            models.Index(fields=["ca", "status"], name="signing_cert_ca_status"),
            models.Index(fields=["-created_at", "-id"], name="signing_cert_created_idx"),
            # Expiries and overdue renewals of the active certificates (dashboard, alerts).
            models.Index(
                fields=["not_after", "renew_after"],
                condition=models.Q(status="active"),
                name="signing_cert_active_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.common_name} ({self.serial})"

    def aws_twin_summary(self) -> str:
        """One line of what AWS IoT showed of this certificate, for admin pages."""
        if self.aws_observed_at is None:
            return "not observed in AWS yet"
        parts = [self.aws_status or "unknown"]
        parts.append(f"thing {self.aws_thing}" if self.aws_thing else "no thing")
        policies = ", ".join(self.aws_policies or [])
        parts.append(f"policies {policies}" if policies else "no policy")
        parts.append(f"observed {self.aws_observed_at:%Y-%m-%d %H:%M} UTC")
        line = "; ".join(parts)
        return f"{line}. {self.aws_note}" if self.aws_note else line
