"""Signing profiles: which CA signs, what the subject holds, how long, how renewed; and the
Common Name template (its syntax, validation and rendering)."""

from __future__ import annotations

import string
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from devices.models import MqttDevice
from portal.services import Actor, audit_record

from ..crypto import KeyType
from ..csr import ValidCsr, csr_validate
from ..errors import KeyStoreUnavailable, WrongCaPassword
from ..keystore import get_key_store
from ..models import CertificateAuthority, SigningProfile, default_accepted_key_types

CN_PLACEHOLDERS = ("station", "device", "serial")
_CN_LITERAL_OK = set(string.ascii_letters + string.digits + "_-:")


CN_SEPARATOR = ":"


def cn_template_validate(template: str) -> None:
    """The CN template syntax and the rule that makes a CN name exactly one device.

    Literal text plus placeholders ``{station}``, ``{device}`` and ``{serial}`` (the
    certificate serial in hex); no format specs or conversions. Literal text may use
    letters, digits, ``_``, ``-`` and ``:`` (what AWS IoT allows in a Thing name, which JITP
    takes from the CN). Station and device names are letters, digits, ``_`` and ``-``, and a
    serial is hex digits: none of them contains ``:``. So when the literal between any two
    placeholders contains a ``:``, the colons of a CN are exactly the template's colons and
    every placeholder's value can be read back from the CN: the mapping CN -> (station,
    device) is injective. The template must contain ``{device}`` and ``{station}`` (device
    names are unique only within a station) or ``{serial}`` (a new CN per certificate).
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
    previous: str | None = None
    for literal, field, spec, conversion in parts:
        bad = sorted({c for c in literal if c not in _CN_LITERAL_OK})
        if bad:
            raise ValidationError(
                {
                    "cn_template": (
                        "The CN template may only contain letters, digits, '_', '-', ':' and the "
                        f"placeholders {{station}}, {{device}}, {{serial}}; found {''.join(bad)!r}."
                    )
                }
            )
        if field is None:
            continue
        if field not in CN_PLACEHOLDERS or spec or conversion:
            raise ValidationError(
                {
                    "cn_template": (
                        f"'{{{field}}}' is not a placeholder; "
                        "use {station}, {device} or {serial}."
                    )
                }
            )
        if previous is not None and CN_SEPARATOR not in literal:
            raise ValidationError(
                {
                    "cn_template": (
                        f"Put a ':' between {{{previous}}} and {{{field}}} (e.g. "
                        "'{station}:{device}'): names may contain '-' and '_', so without "
                        "a ':' two different devices could get the same Common Name."
                    )
                }
            )
        used.add(field)
        previous = field
    if "device" not in used or not used & {"station", "serial"}:
        raise ValidationError(
            {
                "cn_template": (
                    "The CN template must contain {device} and {station} or {serial}: "
                    "device names are unique only within a station, so every device needs "
                    "a Common Name of its own."
                )
            }
        )


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
    if (
        not isinstance(types, list)
        or not types
        or not all(isinstance(t, str) and t in set(KeyType) for t in types)
    ):
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
        store = get_key_store()
        if not password and store.needs_password(profile.ca):
            errors["ca_password"] = "Enter the CA's password."
        else:
            try:
                store.check_password(profile.ca, password or "")
            except WrongCaPassword:
                errors["ca_password"] = (
                    f"The password does not unlock the private key of CA '{profile.ca.alias}'."
                )
            except KeyStoreUnavailable as exc:
                errors["ca"] = str(exc)
            if profile.ca.is_expired:
                errors["ca"] = f"CA '{profile.ca.alias}' has expired."
            if profile.ca.is_archived:
                errors["ca"] = f"CA '{profile.ca.alias}' is archived (retired); choose another CA."
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
    audit_record(
        action="signing_profile_create" if creating else "signing_profile_change",
        obj=profile,
        actor=actor,
        detail={"ca": profile.ca.alias, "cn_template": profile.cn_template},
    )
    return profile


def signing_profile_create(
    *,
    name: str,
    ca: CertificateAuthority,
    ca_password: str,
    country: str,
    cn_template: str = "{station}:{device}",
    validity_days: int = 365,
    accepted_key_types: list[str] | None = None,
    is_default: bool = False,
    actor: Actor = None,
    **optional: Any,
) -> SigningProfile:
    """Create a profile; ``optional`` takes the other model fields (organization, …)."""
    profile = SigningProfile(
        name=name,
        ca=ca,
        country=country,
        cn_template=cn_template,
        validity_days=validity_days,
        is_default=is_default,
        accepted_key_types=accepted_key_types or default_accepted_key_types(),
        **optional,
    )
    return signing_profile_save(profile=profile, ca_password=ca_password, actor=actor)


@transaction.atomic
def signing_profiles_switch_ca(
    *,
    from_ca: CertificateAuthority,
    to_ca: CertificateAuthority,
    to_ca_password: str,
    actor: Actor = None,
    actor_label: str = "",
) -> list[SigningProfile]:
    """Every profile signing with ``from_ca`` signs with ``to_ca`` from now on (CA rotation).

    Each profile is validated with the new CA and its password (the password must unlock
    the new key, the new CA must be valid and not archived); one refusal changes nothing.
    Requests approved but not yet signed are signed by the new CA too: the signing batch
    reads the profile's CA when it runs.
    """
    if from_ca.pk == to_ca.pk:
        raise ValidationError({"ca": "The new CA must differ from the CA it replaces."})
    profiles = list(SigningProfile.objects.select_for_update().filter(ca=from_ca).order_by("name"))
    for profile in profiles:
        profile.ca = to_ca
        signing_profile_validate(profile=profile, ca_password=to_ca_password)
        profile.ca_password = to_ca_password
        profile.full_clean()
        profile.save(update_fields=["ca", "ca_password"])
        audit_record(
            action="signing_profile_switch_ca",
            obj=profile,
            actor=actor,
            actor_label=actor_label,
            detail={"from_ca": from_ca.alias, "to_ca": to_ca.alias},
        )
    return profiles


def signing_profile_for_device(device: MqttDevice) -> SigningProfile | None:
    if device.signing_profile_id is not None:
        return device.signing_profile
    return SigningProfile.objects.select_related("ca").filter(is_default=True).first() or (
        SigningProfile.objects.select_related("ca").first()
        if SigningProfile.objects.count() == 1
        else None
    )


def csr_check(data: str | bytes, *, profile: SigningProfile | None = None) -> ValidCsr:
    """Validate a CSR against a profile's accepted key types (for doors other than the API)."""
    return csr_validate(
        data, accepted_key_types=list(profile.accepted_key_types) if profile else None
    )
