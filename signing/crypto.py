"""Pure-cryptography helpers shared by the key store and the signing service (no Django)."""

from __future__ import annotations

import re
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import NameOID


class KeyType(StrEnum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    EC_P521 = "ec-p521"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @property
    def label(self) -> str:
        kind, _, size = self.value.partition("-")
        return f"EC {size.upper()}" if kind == "ec" else f"RSA {size}"


KEY_TYPE_CHOICES = [(k.value, k.label) for k in KeyType]


def generate_private_key(key_type: str) -> CertificateIssuerPrivateKeyTypes:
    kt = KeyType(key_type)
    if kt is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if kt is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if kt is KeyType.EC_P521:
        return ec.generate_private_key(ec.SECP521R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kt.value.split("-")[1]))


def key_type_of(public_key: PublicKeyTypes) -> str:
    """Name a public key the way the portal does ('ec-p256', 'rsa-2048', …), or raise."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}
        if public_key.curve.name not in names:
            raise ValueError(f"The elliptic curve {public_key.curve.name} is not supported.")
        return names[public_key.curve.name]
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    raise ValueError(f"The key type {type(public_key).__name__} is not supported.")


def signature_hash_for(
    private_key: CertificateIssuerPrivateKeyTypes,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The digest that matches the CA key's strength (P-384: SHA-384, P-521: SHA-512)."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if private_key.curve.key_size > 384:
            return hashes.SHA512()
        if private_key.curve.key_size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    """A KeyUsage with only the named bits: a device's (``digital_signature``) or a CA's
    (``cert_sign``: certificate and CRL signing)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Upper-case hex pairs separated by colons, as browsers and openssl show it."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def aws_certificate_id(cert: x509.Certificate) -> str:
    """AWS IoT's id of a certificate: the SHA-256 of its DER encoding, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_with_colons(serial: int) -> str:
    """Upper-case hex pairs of the big-endian bytes, colon-separated ('0A:1B:…')."""
    return serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex(":").upper()


DN_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
}
_ALLOWED_DN_OIDS = {oid: key for key, oid in DN_ATTRIBUTES.items()}
# The attribute types written in a DN string, only to name an unsupported one in a refusal.
_DN_TYPE = re.compile(r"(?:^|(?<!\\)[,+])\s*([^=,+]*?)\s*=")
_DN_FORM = (
    "Write the distinguished name as in RFC 4514, most specific first, e.g. "
    "'CN=Fleet CA, O=ACME, C=DE' (a ',' inside a value written as '\\,')."
)


def normalise_dn(dn: str) -> str:
    """The DN as people type it, in the strict form RFC 4514 parsers read: spaces around the
    separators and '=' dropped, attribute names upper-cased ('cn = Fleet CA, o=Acme' ->
    'CN=Fleet CA,O=Acme'). Escaped characters ('\\,', '\\ ') are kept as they are."""
    parts: list[tuple[str, str]] = []
    current: list[str] = []
    i = 0
    while i < len(dn):
        char = dn[i]
        if char == "\\" and i + 1 < len(dn):
            current.append(dn[i : i + 2])
            i += 2
            continue
        if char in ",+":
            parts.append(("".join(current), char))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append(("".join(current), ""))
    out = []
    for part, separator in parts:
        key, equals, value = part.partition("=")
        if equals:
            value = value.lstrip(" ")
            while value.endswith(" ") and not value.endswith("\\ "):
                value = value[:-1]
            part = f"{key.strip().upper()}={value}"
        else:
            part = part.strip()
        out.append(part + separator)
    return "".join(out)


def parse_dn(dn: str) -> x509.Name:
    """An RFC 4514 string ('CN=…,O=…,C=…', most specific first) as an ``x509.Name``.

    What people type is accepted too: spaces after the commas, lower-case attribute names
    (:func:`normalise_dn`).

    :meth:`x509.Name.from_rfc4514_string` parses it (and puts the attributes in ASN.1 order,
    C first); this adds what a CA subject here must meet: only CN, O, OU, L, ST and C, each
    at most once, 1-64 characters, C a two-letter upper-case code. Raises ValueError with a
    sentence.
    """
    if not dn or not dn.strip():
        raise ValueError("The distinguished name is empty; give at least CN=….")
    dn = normalise_dn(dn)
    try:
        name = x509.Name.from_rfc4514_string(dn)
    except ValueError as exc:
        if "Country name" in str(exc):
            raise ValueError(
                "C must be a two-letter upper-case country code such as DE or US."
            ) from None
        if "length must be >= 1 and <= 64" in str(exc):
            raise ValueError("CN must be 1-64 characters.") from None
        for key in _DN_TYPE.findall(dn):
            if key not in DN_ATTRIBUTES:
                raise ValueError(
                    f"'{key}' is not a supported name attribute; use CN, O, OU, L, ST or C."
                ) from None
        raise ValueError(f"The distinguished name could not be read. {_DN_FORM}") from None
    seen: set[str] = set()
    for rdn in name.rdns:
        if len(rdn) != 1:
            raise ValueError("Give one attribute per part of the distinguished name (no '+').")
        (attr,) = rdn
        key = _ALLOWED_DN_OIDS.get(attr.oid)
        if key is None:
            raise ValueError(
                f"'{attr.rfc4514_string().split('=')[0]}' is not a supported name "
                "attribute; use CN, O, OU, L, ST or C."
            )
        value = attr.value if isinstance(attr.value, str) else ""
        if key in seen:
            raise ValueError(f"'{key}' appears twice in the distinguished name.")
        if not value:
            raise ValueError(f"'{key}' has an empty value.")
        if key == "C" and not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError("C must be a two-letter upper-case country code such as DE or US.")
        if len(value) > 64:
            raise ValueError(f"'{key}' is longer than 64 characters.")
        seen.add(key)
    return name


def serial_normalize(value: str) -> str | None:
    """A certificate serial in the portal's form ('0A:1B:…') from hex with or without colons
    (an agent reports ``format(serial, "x")``); None when it is not hex."""
    text = (value or "").replace(":", "").strip()
    if not text or len(text) > 80:
        return None
    try:
        number = int(text, 16)
    except ValueError:
        return None
    return serial_with_colons(number)
