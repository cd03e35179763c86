"""Services of the signing app. Key store: generate a CA."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction

from portal.services import audit_record

from .crypto import (
    KeyType,
    fingerprint_sha256,
    generate_private_key,
    parse_dn,
    serial_with_colons,
    signature_hash_for,
)
from .keystore import encrypt_private_key
from .models import CertificateAuthority

MIN_CA_PASSWORD_LENGTH = 8


def _check_password(password: str) -> None:
    if not password or len(password) < MIN_CA_PASSWORD_LENGTH:
        raise ValidationError(
            {"password": f"The CA password must be at least {MIN_CA_PASSWORD_LENGTH} characters."}
        )


def _ca_row_from(
    *, alias: str, cert: x509.Certificate, key_pem: str, key_type: str, source: str,
    overwrite: bool, actor: AbstractBaseUser | AnonymousUser | None,
) -> CertificateAuthority:
    existing = CertificateAuthority.objects.select_for_update().filter(alias=alias).first()
    if existing and not overwrite:
        raise ValidationError(
            {"alias": f"A CA with alias '{alias}' already exists; choose another alias "
                      "or overwrite."}
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
    if actor is not None and getattr(actor, "is_authenticated", False):
        ca.created_by = actor  # type: ignore[assignment]
    ca.full_clean()
    ca.save()
    audit_record(
        action="ca_overwrite" if existing else f"ca_{source}",
        obj=ca,
        actor=actor,
        detail={"fingerprint": ca.fingerprint_sha256, "subject": ca.subject},
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
) -> CertificateAuthority:
    """Generate a CA key and self-signed certificate (CA:true, pathlen 0) into the key store."""
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
    key = generate_private_key(key_type)
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    cert = builder.sign(key, signature_hash_for(key))
    return _ca_row_from(
        alias=alias, cert=cert, key_pem=encrypt_private_key(key, password), key_type=key_type,
        source=CertificateAuthority.Source.GENERATED, overwrite=overwrite, actor=actor,
    )
