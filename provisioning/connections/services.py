"""Writes for connections: create, replace (PUT), delete, bind devices.

Every door (API, admin, commands) calls these. Write-only secrets follow one rule,
documented in docs/connections.md: ``None`` (omitted) keeps what is stored, a value replaces
it, and an empty string for ``certificate``/``private_key`` removes the pair.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.errors import Conflict
from portal.services import Actor, acting_user, audit_record
from provisioning.aws.models import AccessKey, access_key_id_validator
from provisioning.aws.services import access_key_create
from signing.crypto import fingerprint_sha256

from .models import ENDPOINT_RE, Connection

MAX_PEM_BYTES = 16 * 1024
MAX_BINDINGS = 5000
DEFAULT_KEY_STORE_FOR = AccessKey.StorePeriod.DAYS_30
_AWS_SECRET_RE = re.compile(r"^[A-Za-z0-9/+=]{40}$")
#: access_key_create's field names -> the connection payload's.
_KEY_FIELDS = {
    "access_key_id": "access_key",
    "secret": "secret_access_key",
    "store_for": "access_key_store_for",
}


class ConnectionNameTaken(Conflict):
    """Another connection already has this name."""

    code = "connection_exists"


class ConnectionInUse(Conflict):
    """The connection still has devices bound to it."""

    code = "connection_in_use"


@dataclass(frozen=True)
class ConnectionData:
    """A whole connection configuration as a door parsed it (secrets: None = keep)."""

    name: str
    uplink_topic_pattern: str
    region: str
    account_prefix: str
    access_key_id: str
    description: str = ""
    downlink_topic_pattern: str = ""
    device_type: str = ""
    certificate_id: str = ""
    secret_access_key: str | None = None
    access_key_store_for: str | None = None
    certificate: str | None = None
    private_key: str | None = None


def _split_endpoint(value: str, region: str) -> tuple[str, str]:
    """Accept an account prefix (bare or with the ``-ats`` suffix, as the reference connector
    documents it) or the endpoint itself; return (prefix, region)."""
    value = (value or "").strip().lower()
    match = ENDPOINT_RE.match(value)
    if not match:
        return value.removesuffix("-ats"), region
    if region and match["region"] != region:
        raise ValidationError(
            {
                "account_prefix": f"The endpoint is in region {match['region']}, but the "
                f"connection's region is {region}."
            }
        )
    return match["prefix"], match["region"]


def _access_key(data: ConnectionData, actor: Actor) -> AccessKey:
    """The AccessKey row for the payload's accessKeyId, storing its secret when one is given.

    Follows the access-key rules: the secret is kept encrypted for a storage period and then
    purged (a purged key stays linked; send the secret again to use it).
    """
    try:
        access_key_id_validator(data.access_key_id)
    except ValidationError as exc:
        raise ValidationError({"access_key": exc.messages[0]}) from None
    key = AccessKey.objects.select_for_update().filter(access_key_id=data.access_key_id).first()
    if data.secret_access_key is None:
        if key is None:
            raise ValidationError(
                {
                    "secret_access_key": (
                        f"Access key {data.access_key_id} is not stored in the portal yet; "
                        "send its "
                        "secretAccessKey too."
                    )
                }
            )
        return key
    if not _AWS_SECRET_RE.match(data.secret_access_key):
        raise ValidationError(
            {"secret_access_key": "A secret access key is 40 letters, digits, '/', '+' or '='."}
        )
    store_for = data.access_key_store_for or (key.store_for if key else DEFAULT_KEY_STORE_FOR)
    if store_for not in AccessKey.PERIODS:
        raise ValidationError(
            {
                "access_key_store_for": (
                    "The storage period must be one of " + ", ".join(AccessKey.PERIODS) + "."
                )
            }
        )
    if key is None:
        # A new key goes through the one service that stores access keys (same checks,
        # audit and log line as the access-key admin); its errors are renamed to the
        # connection's fields so the API names what the caller sent.
        try:
            return access_key_create(
                access_key_id=data.access_key_id,
                secret=data.secret_access_key,
                store_for=store_for,
                description="Stored with a connection.",
                actor=actor,
            )
        except ValidationError as exc:
            raise ValidationError(
                {
                    _KEY_FIELDS.get(field, field): messages
                    for field, messages in exc.message_dict.items()
                }
            ) from None
    # An existing key keeps its row (connections and other users stay linked): the secret is
    # replaced in place and its storage period restarts, which also revives a purged key.
    # access_key_create refuses existing ids on purpose, so this stays here.
    now = timezone.now()
    key.secret = data.secret_access_key
    key.store_for = store_for
    key.created_at = now
    key.purge_at = now + AccessKey.PERIODS[store_for]
    key.purged_at = None
    key.full_clean()
    key.save()
    audit_record(
        action="access_key_store",
        obj=key,
        actor=actor,
        detail={"store_for": store_for, "via": "connection"},
    )
    return key


@dataclass(frozen=True)
class _CertInfo:
    certificate_pem: str
    private_key_pem: str
    certificate_id: str
    fingerprint: str
    not_after: datetime | None


def _certificate(conn: Connection, data: ConnectionData) -> _CertInfo:
    """Merge the payload's certificate/key with what is stored, then check they belong together."""
    cert_pem = conn.certificate_pem if data.certificate is None else data.certificate.strip()
    key_pem = conn.private_key_pem if data.private_key is None else data.private_key.strip()
    if data.certificate == "" and data.private_key is None:
        key_pem = ""
    if data.private_key == "" and data.certificate is None:
        cert_pem = ""
    cert_pem, key_pem = cert_pem or "", key_pem or ""
    if bool(cert_pem) != bool(key_pem):
        missing = "privateKey" if cert_pem else "certificate"
        raise ValidationError(
            {
                "private_key" if cert_pem else "certificate_pem": (
                    f"The certificate and private key go together; {missing} is missing."
                )
            }
        )
    if not cert_pem:
        if data.certificate_id and not re.fullmatch(r"[0-9a-f]{64}", data.certificate_id):
            raise ValidationError(
                {
                    "certificate_id": (
                        "An AWS IoT certificate id is 64 lower-case hexadecimal characters."
                    )
                }
            )
        return _CertInfo("", "", data.certificate_id, "", None)
    for field, pem in (("certificate_pem", cert_pem), ("private_key", key_pem)):
        if len(pem.encode("utf-8")) > MAX_PEM_BYTES:
            raise ValidationError({field: f"The PEM is larger than {MAX_PEM_BYTES} bytes."})
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("utf-8"))
    except (ValueError, UnicodeError):
        raise ValidationError(
            {"certificate_pem": "The certificate is not a PEM X.509 certificate."}
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode("utf-8"), password=None)
    except TypeError:
        raise ValidationError(
            {
                "private_key": (
                    "The private key is password-protected; send it unencrypted "
                    "(it is stored encrypted)."
                )
            }
        ) from None
    except (ValueError, UnicodeError, UnsupportedAlgorithm):
        raise ValidationError(
            {"private_key": "The private key is not a PEM private key."}
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        matches = cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    except ValueError:
        matches = False
    if not matches:
        raise ValidationError({"private_key": "The private key does not match the certificate."})
    derived_id = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    if data.certificate_id and data.certificate_id != derived_id:
        raise ValidationError(
            {
                "certificate_id": (
                    "certificateId does not match the certificate "
                    "(AWS IoT uses its SHA-256 fingerprint)."
                )
            }
        )
    return _CertInfo(
        cert_pem + "\n",
        key_pem + "\n",
        derived_id,
        fingerprint_sha256(cert),
        cert.not_valid_after_utc,
    )


def _apply(conn: Connection, data: ConnectionData, actor: Actor) -> list[str]:
    """Set every field of ``conn`` from ``data``; returns the names of secrets that changed."""
    if Connection.objects.filter(name=data.name).exclude(pk=conn.pk).exists():
        raise ConnectionNameTaken(f"A connection named {data.name!r} already exists.")
    prefix, region = _split_endpoint(data.account_prefix, data.region)
    certificate = _certificate(conn, data)
    conn.name = data.name
    conn.description = data.description
    conn.region = region
    conn.account_prefix = prefix
    conn.device_type = data.device_type
    conn.uplink_topic_pattern = data.uplink_topic_pattern
    conn.downlink_topic_pattern = data.downlink_topic_pattern
    secrets_changed = []
    if certificate.private_key_pem != (conn.private_key_pem or ""):
        secrets_changed.append("privateKey")
    if certificate.certificate_pem != (conn.certificate_pem or ""):
        secrets_changed.append("certificate")
    conn.certificate_pem = certificate.certificate_pem
    conn.private_key_pem = certificate.private_key_pem
    conn.certificate_id = certificate.certificate_id
    conn.certificate_fingerprint = certificate.fingerprint
    conn.certificate_not_after = certificate.not_after
    # Validate the plain fields before the access key is written, so a bad pattern does not
    # store a secret as a side effect of a failed request.
    conn.full_clean(exclude=["access_key"], validate_unique=False)
    conn.access_key = _access_key(data, actor)
    if data.secret_access_key is not None:
        secrets_changed.append("secretAccessKey")
    conn.full_clean(validate_unique=False)
    return secrets_changed


def _save(conn: Connection) -> None:
    """Save; a concurrent request that took the name first becomes a conflict, not a 500."""
    try:
        with transaction.atomic():
            conn.save()
    except IntegrityError:
        raise ConnectionNameTaken(f"A connection named {conn.name!r} already exists.") from None


@transaction.atomic
def connection_create(*, data: ConnectionData, actor: Actor = None) -> Connection:
    """Create a connection from a whole configuration."""
    conn = Connection(created_by=acting_user(actor))
    secrets_changed = _apply(conn, data, actor)
    _save(conn)
    audit_record(
        action="connection_create", obj=conn, actor=actor, detail={"secrets_set": secrets_changed}
    )
    return conn


@transaction.atomic
def connection_replace(
    *, connection: Connection, data: ConnectionData, actor: Actor = None
) -> Connection:
    """Replace the whole configuration (PUT); omitted write-only secrets are kept."""
    conn = Connection.objects.select_for_update().get(pk=connection.pk)
    secrets_changed = _apply(conn, data, actor)
    _save(conn)
    audit_record(
        action="connection_replace",
        obj=conn,
        actor=actor,
        detail={"secrets_changed": secrets_changed},
    )
    return conn


@transaction.atomic
def connection_delete(*, connection: Connection, actor: Actor = None) -> None:
    """Delete a connection; refused while devices are bound (unbind them first)."""
    conn = Connection.objects.select_for_update().get(pk=connection.pk)
    bound = conn.devices.count()
    if bound:
        raise ConnectionInUse(
            f"Connection {conn.name!r} still has {bound} device{'s' if bound != 1 else ''} "
            "bound; unbind them first (PUT /connections/{id}/devices with an empty list)."
        )
    audit_record(action="connection_delete", obj=conn, actor=actor)
    conn.delete()


@transaction.atomic
def connection_bind_devices(
    *, connection: Connection, devices: Iterable[tuple[str, str]], actor: Actor = None
) -> int:
    """Make exactly these (station, device) pairs the ones bound to ``connection``.

    A listed device bound to another connection moves here; devices bound here but not
    listed are unbound. Returns the number now bound.
    """
    from devices.models import MqttDevice

    conn = Connection.objects.select_for_update().get(pk=connection.pk)
    wanted = sorted(set(devices))
    if len(wanted) > MAX_BINDINGS:
        raise ValidationError({"devices": f"Bind at most {MAX_BINDINGS} devices at once."})
    ids: list[int] = []
    missing: list[str] = []
    for station, device in wanted:
        pk = (
            MqttDevice.objects.filter(station__name=station, name=device)
            .values_list("pk", flat=True)
            .first()
        )
        if pk is None:
            missing.append(f"{station}/{device}")
        else:
            ids.append(pk)
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ValidationError({"devices": f"There is no MQTT device {shown}."})
    unbound = (
        MqttDevice.objects.filter(connection=conn)
        .exclude(pk__in=ids)
        .update(connection=None, updated_at=timezone.now())
    )
    moved = (
        MqttDevice.objects.filter(pk__in=ids)
        .exclude(connection=conn)
        .update(connection=conn, updated_at=timezone.now())
    )
    audit_record(
        action="connection_bind_devices",
        obj=conn,
        actor=actor,
        detail={"bound": len(ids), "newly_bound": moved, "unbound": unbound},
    )
    return len(ids)
