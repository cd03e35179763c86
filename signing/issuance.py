"""Services of the signing service: profiles, onboarding requests, approval, issuance, renewal.

One signing path, whichever door a request comes in by (API, admin, command, renewal policy):

    submit -> PENDING --approve--> APPROVED --sign_batch--> ISSUED
                      --reject---> REJECTED          \\--> FAILED (with a sentence)

Crash safety: a batch is signed inside ONE transaction that first locks its APPROVED rows
(``select_for_update(skip_locked)``), then inserts the certificate rows and flips the requests
to ISSUED. A worker killed mid-batch rolls everything back (the requests stay APPROVED and the
sweeper re-enqueues them); the OneToOne ``IssuedCertificate.request`` makes a second
certificate for the same request impossible even if two workers raced.
"""
from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from devices.models import MqttDevice, Station, name_validator
from portal.models import AuditEvent
from portal.services import Actor, audit_record

from .crypto import KeyType, fingerprint_sha256, serial_with_colons
from .csr import CsrError, ValidCsr, csr_validate, public_key_fingerprint
from .keystore import WrongCaPassword, ca_certificate, get_key_store
from .models import CertificateAuthority, IssuedCertificate, OnboardingRequest, SigningProfile
from .sql import insert_rows, update_returning_ids

Status = OnboardingRequest.Status

BATCH_SIZE = 200
CA_EXPIRY_WARNING_DAYS = 90
CN_PLACEHOLDERS = ("station", "device", "serial")
_CN_LITERAL_OK = set(string.ascii_letters + string.digits + "_-:")
_SERIAL_PLACEHOLDER_LEN = 40  # hex digits of a 159-bit serial, worst case

# The state machine, in one place: which status may become which.
TRANSITIONS: dict[str, set[str]] = {
    Status.PENDING: {Status.APPROVED, Status.REJECTED},
    Status.APPROVED: {Status.ISSUED, Status.FAILED},
    Status.ISSUED: set(),
    Status.REJECTED: set(),
    Status.FAILED: set(),
}


class SigningError(Exception):
    """A refusal a door shows as is: ``status`` (HTTP), stable ``code``, a sentence."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def _can(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, set())


# --- signing profiles ------------------------------------------------------------------------

def cn_template_validate(template: str) -> None:
    """The CN template syntax, documented here: literal text plus placeholders.

    Placeholders are ``{station}``, ``{device}`` and ``{serial}`` (the certificate serial in
    hex); no format specs or conversions. Literal text may use letters, digits, ``_``, ``-``
    and ``:`` (what AWS IoT allows in a Thing name, which JITP takes from the CN). The result
    must be unique per device, so the template must contain ``{device}`` and either
    ``{station}`` or ``{serial}``.
    """
    if not template or len(template) > 128:
        raise ValidationError({"cn_template": "The CN template must be 1-128 characters."})
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        raise ValidationError(
            {"cn_template": "The CN template has an unbalanced '{' or '}'."}
        ) from None
    used: set[str] = set()
    for literal, field, spec, conversion in parts:
        bad = sorted({c for c in literal if c not in _CN_LITERAL_OK})
        if bad:
            raise ValidationError({"cn_template": (
                "The CN template may only contain letters, digits, '_', '-', ':' and the "
                f"placeholders {{station}}, {{device}}, {{serial}}; found {''.join(bad)!r}."
            )})
        if field is None:
            continue
        if field not in CN_PLACEHOLDERS or spec or conversion:
            raise ValidationError({"cn_template": (
                f"'{{{field}}}' is not a placeholder; use {{station}}, {{device}} or {{serial}}."
            )})
        used.add(field)
    if "device" not in used or not used & {"station", "serial"}:
        raise ValidationError({"cn_template": (
            "The CN template must contain {device} and {station} or {serial}, so that every "
            "device gets a unique Common Name."
        )})


def cn_render(template: str, *, station: str, device: str, serial: str) -> str:
    return template.format(station=station, device=device, serial=serial)


def signing_profile_validate(*, profile: SigningProfile, ca_password: str | None) -> None:
    """Every rule a profile must meet; ``ca_password`` None keeps the stored one."""
    errors: dict[str, str] = {}
    try:
        cn_template_validate(profile.cn_template)
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
    country = profile.country or ""
    if not (len(country) == 2 and country.isascii() and country.isalpha() and country.isupper()):
        errors["country"] = "Country must be a two-letter upper-case code such as DE or US."
    types = profile.accepted_key_types
    if (not isinstance(types, list) or not types
            or not all(isinstance(t, str) and t in set(KeyType) for t in types)):
        errors["accepted_key_types"] = (
            "Accepted key types must be a non-empty subset of " + ", ".join(KeyType) + "."
        )
    if not 1 <= (profile.validity_days or 0) <= 3650:
        errors["validity_days"] = "Validity must be between 1 and 3650 days."
    if not 10 <= (profile.renew_at_percent or 0) <= 95:
        errors["renew_at_percent"] = "The renewal point must be between 10 % and 95 %."
    if not 0 <= (profile.renewal_jitter_percent or 0) <= 20:
        errors["renewal_jitter_percent"] = "The renewal jitter must be between 0 % and 20 %."
    if profile.ca_id is None:
        errors["ca"] = "Choose the CA that signs this profile's certificates."
    else:
        password = ca_password if ca_password is not None else profile.ca_password
        if not password:
            errors["ca_password"] = "Enter the CA's password."
        else:
            try:
                get_key_store().load_private_key(profile.ca, password)
            except WrongCaPassword:
                errors["ca_password"] = (
                    f"The password does not unlock the private key of CA '{profile.ca.alias}'."
                )
            if profile.ca.is_expired:
                errors["ca"] = f"CA '{profile.ca.alias}' has expired."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def signing_profile_save(
    *, profile: SigningProfile, ca_password: str | None = None, actor: Actor = None
) -> SigningProfile:
    """Create or update a profile (validated, CA password checked against the CA)."""
    signing_profile_validate(profile=profile, ca_password=ca_password)
    if ca_password is not None:
        profile.ca_password = ca_password
    creating = profile.pk is None
    profile.full_clean()
    profile.save()
    if profile.is_default:
        SigningProfile.objects.exclude(pk=profile.pk).filter(is_default=True).update(
            is_default=False
        )
    audit_record(action="signing_profile_create" if creating else "signing_profile_change",
                 obj=profile, actor=actor,
                 detail={"ca": profile.ca.alias, "cn_template": profile.cn_template})
    return profile


def signing_profile_create(
    *, name: str, ca: CertificateAuthority, ca_password: str, country: str,
    cn_template: str = "{station}-{device}", validity_days: int = 365,
    accepted_key_types: list[str] | None = None, is_default: bool = False,
    actor: Actor = None, **optional: Any,
) -> SigningProfile:
    """Create a profile; ``optional`` takes the other model fields (organization, …)."""
    profile = SigningProfile(
        name=name, ca=ca, country=country, cn_template=cn_template,
        validity_days=validity_days, is_default=is_default,
        accepted_key_types=accepted_key_types or ["ec-p256", "rsa-2048", "rsa-3072", "rsa-4096"],
        **optional,
    )
    return signing_profile_save(profile=profile, ca_password=ca_password, actor=actor)


def signing_profile_for_device(device: MqttDevice) -> SigningProfile | None:
    if device.signing_profile_id is not None:
        return device.signing_profile
    return SigningProfile.objects.select_related("ca").filter(is_default=True).first() or (
        SigningProfile.objects.select_related("ca").first()
        if SigningProfile.objects.count() == 1 else None
    )


# --- onboarding requests -----------------------------------------------------------------------

def _rate_limit_check(station: Station) -> None:
    limit = int(getattr(settings, "SIGNING_RATE_LIMIT_PER_MINUTE", 60))
    since = timezone.now() - timedelta(minutes=1)
    recent = OnboardingRequest.objects.filter(station=station, created_at__gte=since).count()
    if recent >= limit:
        raise SigningError(429, "rate_limited",
                           f"Station {station.name} sent more than {limit} onboarding requests "
                           "in a minute; try again later.")


def _device_name_check(name: str) -> None:
    try:
        name_validator(name)
    except ValidationError:
        raise SigningError(422, "invalid_device_name",
                           "The device name must be 1-63 letters, digits, '_' or '-', starting "
                           "with a letter or digit.") from None


@transaction.atomic
def onboarding_request_submit(
    *, station: Station, device_name: str, csr: str | bytes, comment: str = "",
    renewal: bool = False,
) -> tuple[OnboardingRequest, bool]:
    """A station asks for a certificate; returns ``(request, created)``.

    The same pending (or approved) request - same device, same public key - comes back with
    ``created=False``. An unknown device name creates that device for the station. Renewals
    must come for a device holding an active certificate from us; under the automatic
    policy they are approved at once and signed without a human.
    """
    _device_name_check(device_name)
    if len(comment) > 200:
        raise SigningError(422, "comment_too_long", "The comment is longer than 200 characters.")
    # Lock the station row: concurrent submissions of one station are serialised, so the
    # idempotency check and the rate limit cannot be raced.
    station = Station.objects.select_for_update().get(pk=station.pk)
    device = (MqttDevice.objects.select_related("signing_profile__ca", "current_certificate")
              .filter(station=station, name=device_name).first())
    profile = (signing_profile_for_device(device) if device is not None
               else signing_profile_for_device(MqttDevice(station=station, name=device_name)))
    if profile is None:
        raise SigningError(422, "no_signing_profile",
                           "No signing profile is set for this device and there is no default "
                           "profile; ask the administrator to add one.")
    try:
        valid = csr_validate(csr, accepted_key_types=list(profile.accepted_key_types))
    except CsrError as exc:
        raise SigningError(exc.status, exc.code, exc.detail) from None
    if device is not None:
        # The same key again is a retry (e.g. the agent's POST timed out after we saved it):
        # answer with that request, also once it has been signed - as long as its certificate
        # is still active - so that one key never gets two certificates.
        existing = (OnboardingRequest.objects
                    .filter(Q(status__in=[Status.PENDING, Status.APPROVED])
                            | Q(status=Status.ISSUED, is_renewal=renewal,
                                certificate__status=IssuedCertificate.Status.ACTIVE),
                            device=device, public_key_fingerprint=valid.public_key_fingerprint)
                    .order_by("-created_at").first())
        if existing is not None:
            return existing, False
    _rate_limit_check(station)
    serial_hex = "F" * _SERIAL_PLACEHOLDER_LEN
    cn = cn_render(profile.cn_template, station=station.name, device=device_name,
                   serial=serial_hex)
    if len(cn) > 64:
        raise SigningError(422, "common_name_too_long",
                           f"The certificate name for device {device_name!r} would be longer "
                           "than 64 characters; use a shorter device name.")
    if renewal:
        _renewal_check(station=station, device=device, device_name=device_name)
    if device is None:
        device = MqttDevice(station=station, name=device_name,
                            status=MqttDevice.Status.AWAITING_APPROVAL,
                            onboarding_comment=comment[:200])
        device.full_clean()
        device.save()
        audit_record(action="device_create", obj=device, actor_label=f"station {station.name}",
                     detail={"by": "onboarding request"})
    else:
        # A newer key replaces a pending request with an older key (the agent lost its key).
        replaced = OnboardingRequest.objects.filter(device=device, status=Status.PENDING)
        replaced.update(status=Status.REJECTED, decided_at=timezone.now(),
                        decided_by_label="system",
                        reason="Replaced by a newer request with another key.")
        if not renewal and device.status != MqttDevice.Status.AWAITING_APPROVAL:
            device.status = MqttDevice.Status.AWAITING_APPROVAL
            device.save(update_fields=["status", "updated_at"])
    auto = renewal and profile.renewal_policy == SigningProfile.RenewalPolicy.AUTOMATIC
    now = timezone.now()
    request = OnboardingRequest(
        station=station, device=device, profile=profile, comment=comment,
        csr_pem=valid.pem, key_type=valid.key_type,
        public_key_fingerprint=valid.public_key_fingerprint, is_renewal=renewal,
        status=Status.APPROVED if auto else Status.PENDING,
        decided_at=now if auto else None,
        decided_by_label="renewal policy (automatic)" if auto else "",
        sign_enqueued_at=now if auto else None,
    )
    request.full_clean()
    request.save()
    audit_record(action="renewal_request" if renewal else "onboarding_request", obj=request,
                 actor_label=f"station {station.name}",
                 detail={"key_type": valid.key_type,
                         "public_key_sha256": valid.public_key_fingerprint})
    if auto:
        audit_record(action="renewal_auto_approve", obj=request,
                     actor_label="renewal policy (automatic)")
        _enqueue_signing([request.pk])
    return request, True


def _renewal_check(*, station: Station, device: MqttDevice | None, device_name: str) -> None:
    if device is None or device.current_certificate_id is None:
        raise SigningError(422, "renewal_without_certificate",
                           f"Device {device_name!r} holds no certificate from this portal; send "
                           "a first onboarding request (renewal: false).")
    cert = device.current_certificate
    assert cert is not None
    if cert.status == IssuedCertificate.Status.REVOKED:
        raise SigningError(403, "certificate_revoked",
                           f"The certificate of device {device_name!r} was revoked; renewal is "
                           "refused. Ask the administrator for a new onboarding.")
    if cert.status != IssuedCertificate.Status.ACTIVE:
        raise SigningError(422, "renewal_without_certificate",
                           f"Device {device_name!r} holds no active certificate from this "
                           "portal; send a first onboarding request (renewal: false).")
    if cert.not_after <= timezone.now():
        raise SigningError(422, "certificate_expired",
                           f"The certificate of device {device_name!r} has expired; send a first "
                           "onboarding request (renewal: false).")


def onboarding_request_for_station(*, station: Station, request_id: int) -> OnboardingRequest:
    """A station's own request, or 404 (another station's request does not exist for it)."""
    row = None
    if 0 < request_id < 2**63:
        row = (OnboardingRequest.objects.select_related("device", "profile__ca")
               .filter(pk=request_id, station=station).first())
    if row is None:
        raise SigningError(404, "not_found", f"There is no onboarding request {request_id}.")
    return row


@transaction.atomic
def onboarding_request_fetched(*, request: OnboardingRequest) -> IssuedCertificate | None:
    """The station fetched an issued certificate: older active ones of the device are superseded.

    Superseding on fetch (not on issue) keeps the old certificate usable until the device
    really has the new one.
    """
    if request.status != Status.ISSUED:
        return None
    cert = IssuedCertificate.objects.select_related("ca").get(request=request)
    now = timezone.now()
    old = list(IssuedCertificate.objects.select_for_update()
               .filter(device_id=request.device_id, status=IssuedCertificate.Status.ACTIVE,
                       created_at__lte=cert.created_at).exclude(pk=cert.pk))
    for row in old:
        row.status = IssuedCertificate.Status.SUPERSEDED
        row.superseded_at = now
        row.save(update_fields=["status", "superseded_at"])
        audit_record(action="certificate_supersede", obj=row,
                     actor_label=f"station {request.station.name}",
                     detail={"by_serial": cert.serial})
    return cert


def _pending_ids(ids: Iterable[int] | None) -> list[int]:
    qs = OnboardingRequest.objects.filter(status=Status.PENDING)
    if ids is not None:
        qs = qs.filter(pk__in=list(ids))
    return list(qs.order_by("pk").values_list("pk", flat=True))


@transaction.atomic
def onboarding_requests_approve(
    *, ids: Iterable[int] | None, actor: Actor = None, actor_label: str = ""
) -> list[int]:
    """Approve pending requests (``ids=None``: all pending); returns the approved ids.

    One ``UPDATE … WHERE status = 'pending' RETURNING id`` per 1,000 ids (the statement
    locks and re-checks each row, so a concurrent reject cannot be overwritten), one audit
    row per request in one INSERT per chunk, and signing enqueued in batches once the
    transaction commits.
    """
    now = timezone.now()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    changes = {"status": Status.APPROVED, "decided_at": now,
               "decided_by_id": user.pk if user else None, "decided_by_label": label,
               "sign_enqueued_at": now}
    pending = {"status": Status.PENDING}
    approved: list[int] = []
    if ids is None:
        approved = update_returning_ids(OnboardingRequest, ids=None, where=pending,
                                        values=changes)
    else:
        for chunk in _chunks(sorted(set(ids)), 1000):
            approved.extend(update_returning_ids(OnboardingRequest, ids=chunk, where=pending,
                                                 values=changes))
    _audit_bulk("onboarding_approve", approved, user=user, label=label, at=now)
    _enqueue_signing(approved)
    return approved


@transaction.atomic
def onboarding_requests_reject(
    *, ids: Iterable[int], reason: str, actor: Actor = None, actor_label: str = ""
) -> list[int]:
    """Reject pending requests with a reason the station will see; returns the rejected ids."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason; the station's operator will see it."})
    if len(reason) > 500:
        raise ValidationError({"reason": "The reason is longer than 500 characters."})
    now = timezone.now()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    rejected: list[int] = []
    for chunk in _chunks(_pending_ids(ids), 1000):
        locked = list(OnboardingRequest.objects.select_for_update()
                      .filter(pk__in=chunk, status=Status.PENDING)
                      .values_list("pk", flat=True))
        OnboardingRequest.objects.filter(pk__in=locked, status=Status.PENDING).update(
            status=Status.REJECTED, decided_at=now, decided_by=user, decided_by_label=label,
            reason=reason,
        )
        rejected.extend(locked)
    _audit_bulk("onboarding_reject", rejected, user=user, label=label, detail={"reason": reason})
    return rejected


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _audit_bulk(action: str, ids: Sequence[int], *, user: Any, label: str,
                detail: dict[str, Any] | None = None, at: datetime | None = None) -> None:
    """One audit row per request, one INSERT per 1,000 rows (rows are append-only either way)."""
    if not ids:
        return
    constants = {"at": at or timezone.now(), "action": action,
                 "actor_id": user.pk if user else None, "actor_label": label,
                 "object_type": "signing.onboardingrequest", "detail": detail or {}}
    for chunk in _chunks(ids, 1000):
        insert_rows(AuditEvent, columns=("object_id", "object_repr"),
                    rows=[(str(pk), f"#{pk}") for pk in chunk], constants=constants)


def _enqueue_signing(ids: Sequence[int]) -> None:
    """Hand the ids to the signing queue in batches, after the transaction commits."""
    if not ids:
        return
    from .tasks import sign_batch

    batches = list(_chunks(list(ids), BATCH_SIZE))

    def send() -> None:
        for batch in batches:
            sign_batch.delay(batch)

    transaction.on_commit(send)


@transaction.atomic
def onboarding_requests_sweep(*, older_than_seconds: int = 120) -> int:
    """Re-enqueue approved requests whose signing was handed out long ago and never finished.

    A killed worker loses its batch; this puts it back. Safe to run twice at once: the
    rows are locked and their ``sign_enqueued_at`` moves forward in the same transaction.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    stale = OnboardingRequest.objects.filter(status=Status.APPROVED).filter(
        Q(sign_enqueued_at__lt=cutoff) | Q(sign_enqueued_at__isnull=True)
    )
    ids = list(stale.select_for_update(skip_locked=True).order_by("pk")
               .values_list("pk", flat=True)[:20000])
    for chunk in _chunks(ids, 1000):
        OnboardingRequest.objects.filter(pk__in=chunk).update(sign_enqueued_at=now)
    _enqueue_signing(ids)
    return len(ids)


# --- issuance ------------------------------------------------------------------------------
#
# The batch path is the hot path of the portal (a fleet of 10,000 devices is one bulk
# approval). Its costs were measured (docs/benchmarks.md) and cut at the right depth:
# - the CSR's self-signature is verified ONCE, at submission (csr_validate); signing loads
#   the stored CSR's public key and checks that it is the key staff approved (its SHA-256
#   fingerprint is shown in the approval queue) instead of verifying it a second time;
# - what every certificate of a profile shares (issuer, validity, BC/KU/EKU, AKI, subject
#   parts, the unlocked CA key) is computed once per batch, not per certificate;
# - rows are read as tuples and written with one multi-row INSERT (signing/sql.py), not as
#   model instances through bulk_create.

_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
_KU = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False)
_BC = x509.BasicConstraints(ca=False, path_length=None)
_SIGN_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


@dataclass
class _ProfileContext:
    """What every certificate of one profile shares within one batch (computed once)."""

    profile: SigningProfile
    ca: CertificateAuthority
    base_rdns: list[x509.RelativeDistinguishedName]
    aki: x509.AuthorityKeyIdentifier
    issuer_text: str
    subject_suffix: str
    not_before: datetime
    not_after: datetime
    renew_base: datetime
    renew_jitter: timedelta
    # issuer, validity and BasicConstraints/KeyUsage/ExtendedKeyUsage already set
    template: x509.CertificateBuilder | None = None
    sign: Callable[[x509.CertificateBuilder], x509.Certificate] | None = None
    error: str = ""


def _profile_context(profile: SigningProfile, now: datetime) -> _ProfileContext:
    ca = profile.ca
    ca_cert = ca_certificate(ca)
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country)]
    for oid, value in (
        (NameOID.STATE_OR_PROVINCE_NAME, profile.state),
        (NameOID.LOCALITY_NAME, profile.locality),
        (NameOID.ORGANIZATION_NAME, profile.organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, profile.organizational_unit),
        (NameOID.DN_QUALIFIER, profile.dn_qualifier),
        (NameOID.SERIAL_NUMBER, profile.serial_number),
    ):
        if value:
            attrs.append(x509.NameAttribute(oid, value))
    now = now.replace(microsecond=0)  # certificates hold whole seconds
    not_before = now - timedelta(minutes=5)
    not_after = min(now + timedelta(days=profile.validity_days),
                    ca.not_after.replace(microsecond=0))
    lifetime = not_after - not_before
    ctx = _ProfileContext(
        profile=profile, ca=ca, base_rdns=[x509.RelativeDistinguishedName([a]) for a in attrs],
        aki=aki, issuer_text=ca_cert.subject.rfc4514_string(),
        subject_suffix=x509.Name(attrs).rfc4514_string(), not_before=not_before,
        not_after=not_after, renew_base=not_before + lifetime * (profile.renew_at_percent / 100),
        renew_jitter=lifetime * (profile.renewal_jitter_percent / 100),
    )
    if ca.is_expired:
        ctx.error = f"CA '{ca.alias}' has expired; the request cannot be signed."
        return ctx
    try:
        ctx.sign = get_key_store().signer(ca, profile.ca_password)
    except WrongCaPassword:
        ctx.error = (f"The signing profile '{profile.name}' holds a wrong password for CA "
                     f"'{ca.alias}'; fix the profile, then approve again.")
        return ctx
    ctx.template = (
        x509.CertificateBuilder()
        .issuer_name(ca_cert.subject)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_BC, critical=True)
        .add_extension(_KU, critical=True)
        .add_extension(_EKU, critical=False)
    )
    return ctx


@dataclass(slots=True)
class BuiltCertificate:
    cert: x509.Certificate
    common_name: str
    subject: str
    not_before: datetime
    not_after: datetime
    renew_after: datetime


def certificate_build(
    *, ctx: _ProfileContext, public_key: CertificatePublicKeyTypes, station_name: str,
    device_name: str,
) -> BuiltCertificate:
    """Sign one device certificate with the batch's profile context.

    Subject from the profile only, extensions from the portal only: nothing the CSR asked
    for is copied (the CSR contributes its public key, nothing else).
    """
    assert ctx.template is not None
    assert ctx.sign is not None
    serial = x509.random_serial_number()  # 159 random bits
    cn = cn_render(ctx.profile.cn_template, station=station_name, device=device_name,
                   serial=f"{serial:x}")
    if len(cn) > 64:
        raise ValueError(f"The Common Name {cn!r} is longer than 64 characters.")
    subject = x509.Name([*ctx.base_rdns, x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn)])])
    cert = ctx.sign(
        ctx.template.subject_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(ctx.aki, critical=False)
    )
    renew_after = ctx.renew_base + ctx.renew_jitter * random.uniform(-1.0, 1.0)
    # CN characters are limited by the template syntax and name validators: no escaping needed.
    return BuiltCertificate(cert=cert, common_name=cn, subject=f"CN={cn},{ctx.subject_suffix}",
                            not_before=ctx.not_before, not_after=ctx.not_after,
                            renew_after=min(renew_after, ctx.not_after))


class _Row(NamedTuple):
    """The few columns of a request that signing needs (no model instances: cheaper)."""

    pk: int
    csr_pem: str
    public_key_fingerprint: str
    profile_id: int
    device_id: int
    is_renewal: bool
    station_name: str
    device_name: str


@dataclass
class BatchResult:
    issued: int = 0
    failed: int = 0
    skipped: int = 0


_CERT_COLUMNS = ("request_id", "device_id", "serial", "common_name", "subject", "renew_after",
                 "fingerprint_sha256", "certificate_pem")


def onboarding_requests_sign(*, ids: Sequence[int]) -> BatchResult:
    """Sign the APPROVED requests among ``ids`` in one transaction (see the module docstring).

    Statements per batch: claim the rows (lock, flip to ISSUED and read them in one
    statement on PostgreSQL), the CN-collision check (templates without ``{serial}``), one
    INSERT (COPY) of the certificates per profile, one UPDATE of the devices, one audit row;
    failures (rare) go back from ISSUED to FAILED, one UPDATE per reason. Nothing of it is
    visible to anyone before the commit.
    """
    result = BatchResult()
    with transaction.atomic():
        _no_jit()
        now = timezone.now()
        rows = _claim(ids, now=now)
        result.skipped = len(ids) - len(rows)
        if not rows:
            return result
        contexts = {p.pk: _profile_context(p, now) for p in SigningProfile.objects
                    .select_related("ca").filter(pk__in={r.profile_id for r in rows})}
        cn_owner = _active_cn_owners(rows, contexts)
        failures: dict[int, str] = {}
        issued: list[tuple[_Row, str, str]] = []  # (row, serial, CN)
        values: dict[int, list[tuple[Any, ...]]] = {pk: [] for pk in contexts}
        for row in rows:
            ctx = contexts[row.profile_id]
            if ctx.error:
                failures[row.pk] = ctx.error
                continue
            try:
                public_key = x509.load_pem_x509_csr(row.csr_pem.encode("ascii")).public_key()
                if public_key_fingerprint(public_key) != row.public_key_fingerprint:
                    raise ValueError("The stored CSR does not hold the public key that was "
                                     "approved.")
                built = certificate_build(ctx=ctx, public_key=public_key,  # type: ignore[arg-type]
                                          station_name=row.station_name,
                                          device_name=row.device_name)
            except _SIGN_ERRORS as exc:
                failures[row.pk] = str(exc) or "The CSR could not be signed."
                continue
            cn, cert = built.common_name, built.cert
            owner = cn_owner.setdefault(cn, row.device_id)
            if owner != row.device_id:
                failures[row.pk] = (f"The Common Name {cn!r} already belongs to another "
                                    "device's active certificate; fix the CN template.")
                continue
            serial = serial_with_colons(cert.serial_number)
            values[row.profile_id].append((
                row.pk, row.device_id, serial, cn, built.subject, built.renew_after,
                fingerprint_sha256(cert), cert.public_bytes(Encoding.PEM).decode("ascii"),
            ))
            issued.append((row, serial, cn))
        if issued:
            cert_ids: dict[int, int] = {}
            for profile_id, profile_rows in values.items():
                ctx = contexts[profile_id]
                cert_ids.update((request_id, cert_id) for cert_id, request_id in insert_rows(
                    IssuedCertificate, columns=_CERT_COLUMNS, rows=profile_rows,
                    constants={"profile_id": profile_id, "ca_id": ctx.ca.pk,
                               "issuer": ctx.issuer_text, "not_before": ctx.not_before,
                               "not_after": ctx.not_after, "created_at": now,
                               "status": IssuedCertificate.Status.ACTIVE},
                    returning=("id", "request_id"),
                ))
            issued_pks = [row.pk for row, _, _ in issued]
            _devices_update([(row.device_id, cert_ids[row.pk], cn) for row, _, cn in issued],
                            now=now)
            # One audit event per batch (who, when, which requests and serials): a row per
            # certificate cost ~10 % of the signing CPU. Renewals are named in the detail.
            first, last = cert_ids[issued_pks[0]], cert_ids[issued_pks[-1]]
            AuditEvent.objects.create(
                action="certificate_sign_batch", actor=None, actor_label="signing worker",
                object_type="signing.issuedcertificate", object_id=f"{first}-{last}"[:64],
                object_repr=f"{len(issued)} certificates",
                detail={"requests": issued_pks, "serials": [s for _, s, _ in issued],
                        "renewals": [row.pk for row, _, _ in issued if row.is_renewal]},
            )
        by_reason: dict[str, list[int]] = {}
        for pk, reason in failures.items():
            by_reason.setdefault(reason[:500], []).append(pk)
        for reason, pks in by_reason.items():
            # Claimed as ISSUED a moment ago in this transaction: approved -> failed for
            # everyone else.
            OnboardingRequest.objects.filter(pk__in=pks, status=Status.ISSUED).update(
                status=Status.FAILED, reason=reason, issued_at=None
            )
        _audit_bulk("certificate_sign_failed", list(failures), user=None, label="signing worker")
        result.issued = len(issued)
        result.failed = len(failures)
    return result


def _claim(ids: Sequence[int], *, now: datetime) -> list[_Row]:
    """Lock the APPROVED requests among ``ids``, mark them ISSUED and read what signing needs.

    Rows another worker holds are skipped (``SKIP LOCKED``), rows no longer APPROVED too.
    The caller's transaction makes the flip visible only together with the certificates.
    PostgreSQL does it in one statement (one tuple version per row instead of a lock and
    then an update); SQLite (no row locks: the IMMEDIATE transaction holds the database's
    write lock) reads, then updates.
    """
    if connection.vendor == "postgresql":
        # The CTE looks the batch up by primary key only, so no planner (stale statistics
        # right after a bulk approval) can pick the status index and scan every approved
        # row; FOR UPDATE returns each row's latest version, whose status is then checked.
        qn = connection.ops.quote_name
        requests = qn(OnboardingRequest._meta.db_table)
        sql = (
            f"WITH batch AS MATERIALIZED (SELECT id, status FROM {requests} "
            "WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED) "
            f"UPDATE {requests} AS r SET status = %s, issued_at = %s "
            f"FROM batch, {qn(MqttDevice._meta.db_table)} AS d, "
            f"{qn(Station._meta.db_table)} AS s "
            "WHERE r.id = batch.id AND batch.status = %s "
            "AND d.id = r.device_id AND s.id = r.station_id "
            "RETURNING r.id, r.csr_pem, r.public_key_fingerprint, r.profile_id, r.device_id, "
            "r.is_renewal, s.name, d.name"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [[int(i) for i in ids], Status.ISSUED, now, Status.APPROVED])
            return sorted(_Row(*values) for values in cursor.fetchall())
    rows = sorted(_Row(*values) for values in (
        OnboardingRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=list(ids), status=Status.APPROVED)
        .values_list("pk", "csr_pem", "public_key_fingerprint", "profile_id", "device_id",
                     "is_renewal", "station__name", "device__name")
    ))
    OnboardingRequest.objects.filter(pk__in=[r.pk for r in rows]).update(
        status=Status.ISSUED, issued_at=now
    )
    return rows


def _no_jit() -> None:
    """PostgreSQL: no JIT compilation for this transaction's short statements.

    Without fresh statistics (a table that just grew by thousands of rows, or autovacuum
    off) the planner overestimates these statements and JIT-compiles them: ~10 ms per
    statement for work that takes well under 1 ms.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


def _active_cn_owners(rows: Sequence[_Row],
                      contexts: dict[int, _ProfileContext]) -> dict[str, int]:
    """CNs this batch will use that another device's active certificate holds -> that device.

    One probe of the CN index per candidate, as a scalar subquery: its plan does not depend
    on the statistics (an ``IN`` list over a table that has just grown by thousands of rows
    was planned as a sequential scan and cost up to 40 ms per batch; a status index would
    match almost every row).
    """
    candidates: dict[str, int] = {}
    for row in rows:
        template = contexts[row.profile_id].profile.cn_template
        if "{serial}" not in template:
            candidates.setdefault(cn_render(template, station=row.station_name,
                                            device=row.device_name, serial=""), row.device_id)
    if not candidates:
        return {}
    table = connection.ops.quote_name(IssuedCertificate._meta.db_table)
    params: list[Any] = [IssuedCertificate.Status.ACTIVE]
    if connection.vendor == "postgresql":
        # Two array parameters instead of 400 placeholders (client-side binding parses them).
        source = "unnest(%s::text[], %s::bigint[]) AS v(column1, column2)"
        params += [list(candidates), list(candidates.values())]
    else:
        source = f"(VALUES {', '.join(['(%s, %s)'] * len(candidates))}) AS v"
        for cn, device_id in candidates.items():
            params.extend([cn, device_id])
    sql = (
        f"SELECT v.column1, (SELECT MAX(CASE WHEN c.status = %s AND c.device_id <> v.column2 "
        f"THEN c.device_id END) FROM {table} c WHERE c.common_name = v.column1) FROM {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {cn: other for cn, other in cursor.fetchall() if other is not None}


def _devices_update(issued: Sequence[tuple[int, int, str]], *, now: datetime) -> None:
    """Point each device at its new certificate in ONE ``UPDATE … FROM (VALUES …)`` statement.

    ``issued`` holds (device id, certificate id, CN) in signing order; the last one of a
    device wins. ``bulk_update`` builds a CASE per field and row, which costs more than
    signing; the VALUES form works on PostgreSQL and SQLite (>= 3.33) alike.
    """
    latest = {device_id: (cert_id, cn) for device_id, cert_id, cn in issued}
    table = MqttDevice._meta.db_table
    params: list[Any] = []
    if connection.vendor == "postgresql":
        # Three array parameters instead of 600 placeholders.
        source = "unnest(%s::bigint[], %s::bigint[], %s::text[]) AS v(column1, column2, column3)"
        params += [list(latest), [c for c, _ in latest.values()],
                   [cn for _, cn in latest.values()]]
    else:
        source = f"(VALUES {', '.join(['(%s, %s, %s)'] * len(latest))}) AS v"
        for device_id, (cert_id, cn) in latest.items():
            params.extend([device_id, cert_id, cn])
    connected = MqttDevice.Status.CONNECTED
    sql = (
        f'UPDATE "{table}" SET "current_certificate_id" = v.column2, "client_id" = v.column3, '
        f'"status" = CASE WHEN "{table}"."status" = %s THEN %s ELSE %s END, '
        f'"updated_at" = %s FROM {source} WHERE "{table}"."id" = v.column1'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connected, connected, MqttDevice.Status.CERTIFICATE_ISSUED,
                             connection.ops.adapt_datetimefield_value(now), *params])


def onboarding_requests_fail(*, ids: Sequence[int], reason: str) -> int:
    """Mark still-approved requests failed (a task that gave up); returns how many."""
    count = OnboardingRequest.objects.filter(pk__in=list(ids), status=Status.APPROVED).update(
        status=Status.FAILED, reason=reason[:500]
    )
    return count


# --- certificates ------------------------------------------------------------------------------

@transaction.atomic
def certificate_revoke(*, certificate: IssuedCertificate, reason: str, actor: Actor = None
                       ) -> IssuedCertificate:
    """Revoke a certificate; the device's renewals are refused from now on."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason for the revocation."})
    cert = IssuedCertificate.objects.select_for_update().get(pk=certificate.pk)
    if cert.status == IssuedCertificate.Status.REVOKED:
        return cert
    cert.status = IssuedCertificate.Status.REVOKED
    cert.revoked_at = timezone.now()
    cert.revocation_reason = reason[:200]
    cert.save(update_fields=["status", "revoked_at", "revocation_reason"])
    audit_record(action="certificate_revoke", obj=cert, actor=actor,
                 detail={"reason": cert.revocation_reason, "serial": cert.serial})
    return cert


def certificates_revoke(*, ids: Iterable[int], reason: str, actor: Actor = None) -> int:
    count = 0
    for cert in IssuedCertificate.objects.filter(pk__in=list(ids)).exclude(
        status=IssuedCertificate.Status.REVOKED
    ):
        certificate_revoke(certificate=cert, reason=reason, actor=actor)
        count += 1
    return count


def ca_expiry_warnings(*, days: int = CA_EXPIRY_WARNING_DAYS) -> list[str]:
    """Sentences for CAs that expire within ``days`` (or have expired)."""
    now = timezone.now()
    out = []
    for ca in CertificateAuthority.objects.filter(not_after__lte=now + timedelta(days=days)):
        if ca.not_after <= now:
            out.append(f"CA '{ca.alias}' expired on {ca.not_after:%Y-%m-%d}; devices signed by "
                       "it cannot renew.")
        else:
            left = (ca.not_after - now).days
            out.append(f"CA '{ca.alias}' expires on {ca.not_after:%Y-%m-%d} (in {left} days); "
                       "plan a new CA and signing profile.")
    return out


@dataclass
class RenewalCheck:
    marked_due: int
    warnings: list[str]


@transaction.atomic
def renewals_check() -> RenewalCheck:
    """Mark active certificates whose renewal point has passed; list CA-expiry warnings."""
    now = timezone.now()
    marked = IssuedCertificate.objects.filter(
        status=IssuedCertificate.Status.ACTIVE, renew_after__lte=now, renewal_due_at__isnull=True
    ).update(renewal_due_at=now)
    return RenewalCheck(marked_due=marked, warnings=ca_expiry_warnings())


def csr_check(data: str | bytes, *, profile: SigningProfile | None = None) -> ValidCsr:
    """Validate a CSR against a profile's accepted key types (for doors other than the API)."""
    return csr_validate(data, accepted_key_types=list(profile.accepted_key_types)
                        if profile else None)
