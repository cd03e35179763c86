"""What a signing profile puts in a device certificate: subject from the profile (never the
CSR), the CA as issuer, validity capped by the CA's end, BasicConstraints/KeyUsage/EKU, SKI
and AKI. What every certificate of a profile shares is computed once per batch
(:class:`ProfileContext`); :func:`certificate_build` makes one certificate from it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..crypto import key_usage
from ..errors import KeyStoreUnavailable, WrongCaPassword
from ..keystore import ca_certificate, get_key_store
from ..models import CertificateAuthority, SigningProfile
from .profiles import cn_render

_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
_KU = key_usage(digital_signature=True)
_BC = x509.BasicConstraints(ca=False, path_length=None)
SIGN_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


@dataclass
class ProfileContext:
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


def profile_context(profile: SigningProfile, now: datetime) -> ProfileContext:
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
    not_after = min(
        now + timedelta(days=profile.validity_days), ca.not_after.replace(microsecond=0)
    )
    lifetime = not_after - not_before
    ctx = ProfileContext(
        profile=profile,
        ca=ca,
        base_rdns=[x509.RelativeDistinguishedName([a]) for a in attrs],
        aki=aki,
        issuer_text=ca_cert.subject.rfc4514_string(),
        subject_suffix=x509.Name(attrs).rfc4514_string(),
        not_before=not_before,
        not_after=not_after,
        renew_base=not_before + lifetime * (profile.renew_at_percent / 100),
        renew_jitter=lifetime * (profile.renewal_jitter_percent / 100),
    )
    if ca.is_expired:
        ctx.error = f"CA '{ca.alias}' has expired; the request cannot be signed."
        return ctx
    if ca.is_archived:
        ctx.error = (
            f"CA '{ca.alias}' is archived (retired); switch the signing profile "
            f"'{profile.name}' to another CA, then approve again."
        )
        return ctx
    try:
        ctx.sign = get_key_store().signer(ca, profile.ca_password)
    except WrongCaPassword:
        ctx.error = (
            f"The signing profile '{profile.name}' holds a wrong password for CA "
            f"'{ca.alias}'; fix the profile, then approve again."
        )
        return ctx
    except KeyStoreUnavailable as exc:
        ctx.error = f"CA '{ca.alias}' cannot sign: {exc}"
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
    *,
    ctx: ProfileContext,
    public_key: CertificatePublicKeyTypes,
    station_name: str,
    device_name: str,
    serial: int | None = None,
) -> BuiltCertificate:
    """Sign one device certificate with the batch's profile context.

    Subject from the profile only, extensions from the portal only: nothing the CSR asked
    for is copied (the CSR contributes its public key, nothing else). ``serial`` defaults
    to 159 random bits.
    """
    assert ctx.template is not None
    assert ctx.sign is not None
    if serial is None:
        serial = x509.random_serial_number()
    cn = common_name_for(ctx, station_name=station_name, device_name=device_name, serial=serial)
    subject = x509.Name(
        [
            *ctx.base_rdns,
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
        ]
    )
    cert = ctx.sign(
        ctx.template.subject_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(ctx.aki, critical=False)
    )
    renew_after = ctx.renew_base + ctx.renew_jitter * random.uniform(-1.0, 1.0)
    # CN characters are limited by the template syntax and name validators: no escaping needed.
    return BuiltCertificate(
        cert=cert,
        common_name=cn,
        subject=f"CN={cn},{ctx.subject_suffix}",
        not_before=ctx.not_before,
        not_after=ctx.not_after,
        renew_after=min(renew_after, ctx.not_after),
    )


def common_name_for(
    ctx: ProfileContext, *, station_name: str, device_name: str, serial: int
) -> str:
    cn = cn_render(
        ctx.profile.cn_template, station=station_name, device=device_name, serial=f"{serial:x}"
    )
    if len(cn) > 64:
        raise ValueError(f"The Common Name {cn!r} is longer than 64 characters.")
    return cn
