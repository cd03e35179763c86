"""Certificate authorities in the key store: generate one, or import one (PEM or PKCS#12).

Every refusal is a ValidationError keyed by the form field it belongs to, so the admin's
add form shows it next to that field and a command prints its sentence.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    pkcs12,
)
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction

from portal.services import audit_record

from .. import hsm
from ..crypto import (
    KeyType,
    fingerprint_sha256,
    generate_private_key,
    key_type_of,
    key_usage,
    parse_dn,
    serial_with_colons,
    signature_hash_for,
)
from ..errors import KeyStoreUnavailable
from ..keystore import encrypt_private_key
from ..models import CertificateAuthority

MIN_CA_PASSWORD_LENGTH = 8


def _check_password(password: str) -> None:
    if not password or len(password) < MIN_CA_PASSWORD_LENGTH:
        raise ValidationError(
            {"password": f"The CA password must be at least {MIN_CA_PASSWORD_LENGTH} characters."}
        )


def _ca_row_from(
    *,
    alias: str,
    cert: x509.Certificate,
    key_pem: str,
    key_type: str,
    source: str,
    overwrite: bool,
    actor: AbstractBaseUser | AnonymousUser | None,
    token_key: hsm.TokenKey | None = None,
) -> CertificateAuthority:
    existing = CertificateAuthority.objects.select_for_update().filter(alias=alias).first()
    if existing and not overwrite:
        raise ValidationError(
            {
                "alias": f"A CA with alias '{alias}' already exists; choose another alias "
                "or overwrite."
            }
        )
    ca = existing or CertificateAuthority(alias=alias)
    ca.certificate_pem = cert.public_bytes(encoding=Encoding.PEM).decode("ascii")
    ca.private_key_pem = key_pem
    ca.fingerprint_sha256 = fingerprint_sha256(cert)
    ca.subject = cert.subject.rfc4514_string()
    ca.serial = serial_with_colons(cert.serial_number)
    ca.not_before = cert.not_valid_before_utc
    ca.not_after = cert.not_valid_after_utc
    ca.key_type = key_type
    ca.source = source
    ca.key_backend = (
        CertificateAuthority.KeyBackend.PKCS11
        if token_key
        else CertificateAuthority.KeyBackend.DATABASE
    )
    ca.pkcs11_token_label = token_key.token_label if token_key else ""
    ca.pkcs11_key_label = token_key.key_label if token_key else ""
    ca.pkcs11_key_id = token_key.key_id if token_key else ""
    if actor is not None and getattr(actor, "is_authenticated", False):
        ca.created_by = actor  # type: ignore[assignment]
    ca.full_clean()
    ca.save()
    audit_record(
        action="ca_overwrite" if existing else f"ca_{source}",
        obj=ca,
        actor=actor,
        detail={
            "fingerprint": ca.fingerprint_sha256,
            "subject": ca.subject,
            "key_backend": ca.key_backend,
        },
    )
    return ca


@transaction.atomic
def ca_generate(
    *,
    alias: str,
    dn: str,
    password: str,
    key_type: str = KeyType.EC_P256,
    days: int = 730,
    overwrite: bool = False,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    backend: str = CertificateAuthority.KeyBackend.DATABASE,
) -> CertificateAuthority:
    """Generate a CA key and self-signed certificate (CA:true, pathlen 0) into the key store.

    ``backend`` ``pkcs11``: the key pair is generated inside the HSM token (PKCS11_*
    settings), non-extractable; ``password`` is not used (the token's PIN unlocks it).
    """
    if backend not in set(CertificateAuthority.KeyBackend):
        raise ValidationError({"backend": f"'{backend}' is not a key backend."})
    pkcs11 = backend == CertificateAuthority.KeyBackend.PKCS11
    if not pkcs11:
        _check_password(password)
    try:
        subject = parse_dn(dn)
    except ValueError as exc:
        raise ValidationError({"dn": str(exc)}) from None
    if not subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise ValidationError({"dn": "A CA's distinguished name needs a CN."})
    if key_type not in set(KeyType):
        raise ValidationError({"key_type": f"'{key_type}' is not a supported key type."})
    if not 1 <= days <= 36500:
        raise ValidationError({"days": "Validity must be between 1 and 36500 days."})
    if CertificateAuthority.objects.filter(alias=alias).exists() and not overwrite:
        raise ValidationError(
            {
                "alias": f"A CA with alias '{alias}' already exists; choose another alias "
                "or overwrite."
            }
        )
    token_key: hsm.TokenKey | None = None
    if pkcs11:
        try:
            token_key, public_key = hsm.key_generate(key_type=key_type, label=alias)
        except KeyStoreUnavailable as exc:
            raise ValidationError({"backend": str(exc)}) from None
    else:
        key = generate_private_key(key_type)
        public_key = key.public_key()
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)  # type: ignore[arg-type]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if token_key is not None:
        cert = hsm.signer(token_key, key_type=key_type)(builder)
        key_pem = ""
    else:
        cert = builder.sign(key, signature_hash_for(key))
        key_pem = encrypt_private_key(key, password)
    ca = _ca_row_from(
        alias=alias,
        cert=cert,
        key_pem=key_pem,
        key_type=key_type,
        source=CertificateAuthority.Source.GENERATED,
        overwrite=overwrite,
        actor=actor,
        token_key=token_key,
    )
    return ca


# Imported CAs go through the same row writer as generated ones.


def _check_ca_certificate(cert: x509.Certificate, *, field: str) -> None:
    """Refuse certificates that cannot serve as a JITP CA (not a CA, expired, not yet valid)."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ValidationError(
            {
                field: "This certificate is not a CA certificate (BasicConstraints CA:true is "
                "missing); import the CA's own certificate, not a device certificate."
            }
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.key_cert_sign:
        raise ValidationError(
            {
                field: "This CA certificate's key usage does not allow signing certificates "
                "(keyCertSign is missing)."
            }
        )
    now = datetime.now(UTC)
    if cert.not_valid_after_utc <= now:
        raise ValidationError(
            {
                field: f"This CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                "import a valid one."
            }
        )
    if cert.not_valid_before_utc > now:
        raise ValidationError(
            {
                field: f"This CA certificate is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC."
            }
        )


def _import_key_pair(
    *,
    alias: str,
    cert: x509.Certificate,
    key: object,
    password: str,
    overwrite: bool,
    actor: AbstractBaseUser | AnonymousUser | None,
    cert_field: str,
    key_field: str,
) -> CertificateAuthority:
    _check_password(password)
    try:
        key_type = key_type_of(cert.public_key())
    except ValueError as exc:
        raise ValidationError({cert_field: str(exc)}) from None
    if key_type not in set(KeyType):
        raise ValidationError({cert_field: f"The key type {key_type} is not supported."})
    public = key.public_key()  # type: ignore[attr-defined]
    spki = PublicFormat.SubjectPublicKeyInfo
    if public.public_bytes(Encoding.DER, spki) != cert.public_key().public_bytes(
        Encoding.DER, spki
    ):
        raise ValidationError(
            {
                key_field: "The private key does not match the certificate; import the key that "
                "belongs to this CA certificate."
            }
        )
    _check_ca_certificate(cert, field=cert_field)
    return _ca_row_from(
        alias=alias,
        cert=cert,
        key_pem=encrypt_private_key(key, password),  # type: ignore[arg-type]
        key_type=key_type,
        source=CertificateAuthority.Source.IMPORTED,
        overwrite=overwrite,
        actor=actor,
    )


@transaction.atomic
def ca_import_pem(
    *,
    alias: str,
    certificate_pem: str | bytes,
    private_key_pem: str | bytes,
    key_password: str = "",
    password: str,
    overwrite: bool = False,
    actor: AbstractBaseUser | AnonymousUser | None = None,
) -> CertificateAuthority:
    """Import a CA from a PEM certificate and PEM private key.

    ``key_password`` opens the key as given (empty when it is not encrypted); the key is then
    re-encrypted with ``password``, the entry's own password, like a generated CA's key.
    """
    cert_bytes = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    key_bytes = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    try:
        cert = x509.load_pem_x509_certificate(cert_bytes)
    except ValueError:
        raise ValidationError(
            {
                "certificate_pem": "The certificate is not a PEM X.509 certificate "
                "(-----BEGIN CERTIFICATE-----)."
            }
        ) from None
    if b"PRIVATE KEY-----" not in key_bytes:
        raise ValidationError(
            {
                "private_key_pem": "The private key is not a PEM private key "
                "(-----BEGIN … PRIVATE KEY-----)."
            }
        )
    try:
        key = load_pem_private_key(key_bytes, key_password.encode("utf-8") or None)
    except TypeError:
        if key_password:
            raise ValidationError(
                {"key_password": "The private key is not encrypted; leave its password empty."}
            ) from None
        raise ValidationError(
            {"key_password": "The private key is encrypted; give its password."}
        ) from None
    except ValueError:
        if key_password:
            raise ValidationError({"key_password": "The private key password is wrong."}) from None
        raise ValidationError(
            {
                "private_key_pem": "The private key could not be read; it is damaged or in a "
                "format other than PEM."
            }
        ) from None
    return _import_key_pair(
        alias=alias,
        cert=cert,
        key=key,
        password=password,
        overwrite=overwrite,
        actor=actor,
        cert_field="certificate_pem",
        key_field="private_key_pem",
    )


@transaction.atomic
def ca_import_pkcs12(
    *,
    alias: str,
    pkcs12_data: bytes,
    pkcs12_password: str,
    password: str,
    overwrite: bool = False,
    actor: AbstractBaseUser | AnonymousUser | None = None,
) -> CertificateAuthority:
    """Import a CA from a PKCS#12 file (key + certificate); the key is re-encrypted."""
    try:
        key, cert, _chain = pkcs12.load_key_and_certificates(
            pkcs12_data, pkcs12_password.encode("utf-8") or None
        )
    except ValueError:
        raise ValidationError(
            {
                "pkcs12_password": "The PKCS#12 password is wrong, or the file is not a PKCS#12 "
                "(.p12/.pfx) file."
            }
        ) from None
    if cert is None or key is None:
        raise ValidationError(
            {
                "pkcs12_file": "The PKCS#12 file must hold both the CA certificate and its "
                "private key."
            }
        )
    return _import_key_pair(
        alias=alias,
        cert=cert,
        key=key,
        password=password,
        overwrite=overwrite,
        actor=actor,
        cert_field="pkcs12_file",
        key_field="pkcs12_file",
    )
