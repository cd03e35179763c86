"""The PKCS#11 side of the key store: CA keys generated in a token, which only signs.

Library: python-pkcs11 (maintained, typed, a thin Cython layer over the PKCS#11 C API). The
module (``PKCS11_MODULE``), token label (``PKCS11_TOKEN_LABEL``) and user PIN
(``PKCS11_PIN``) come from the settings (environment); a CA row holds the token label, key
label and key id, never the PIN.

The private key is generated in the token with ``CKA_SENSITIVE`` true and
``CKA_EXTRACTABLE`` false: its value never leaves the token. A certificate is made by
building its TBSCertificate with ``cryptography``, letting the token sign those bytes and
assembling ``Certificate ::= SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }``
(:func:`certificate_assemble`): ``cryptography`` cannot sign with a key it does not hold.

One logged-in session per (module, token) and process, shared by every signer under a lock:
PKCS#11 login state belongs to the application, so a second login fails and a logout of one
session logs out all of them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from django.conf import settings

from .crypto import KeyType
from .errors import KeyStoreUnavailable

# EC key type -> (curve, digest, bytes of r and of s)
_EC: dict[KeyType, tuple[str, str, int]] = {
    KeyType.EC_P256: ("secp256r1", "sha256", 32),
    KeyType.EC_P384: ("secp384r1", "sha384", 48),
    KeyType.EC_P521: ("secp521r1", "sha512", 66),
}
_lock = threading.Lock()
_sessions: dict[tuple[str, str], Any] = {}
_reference_keys: dict[str, Any] = {}


@dataclass(frozen=True)
class TokenKey:
    token_label: str
    key_label: str
    key_id: str  # hex


def _config() -> tuple[str, str]:
    module = str(getattr(settings, "PKCS11_MODULE", "") or "")
    pin = str(getattr(settings, "PKCS11_PIN", "") or "")
    if not module:
        raise KeyStoreUnavailable("Set PKCS11_MODULE to the PKCS#11 module (.so) of the HSM.")
    if not os.path.exists(module):
        raise KeyStoreUnavailable(f"The PKCS#11 module {module} does not exist.")
    if not pin:
        raise KeyStoreUnavailable("Set PKCS11_PIN to the user PIN of the HSM token.")
    return module, pin


def default_token_label() -> str:
    label = str(getattr(settings, "PKCS11_TOKEN_LABEL", "") or "")
    if not label:
        raise KeyStoreUnavailable("Set PKCS11_TOKEN_LABEL to the label of the HSM token.")
    return label


def _session(token_label: str) -> Any:
    """The process's logged-in session on that token (call with ``_lock`` held)."""
    import pkcs11
    from pkcs11 import exceptions as p11e

    module, pin = _config()
    key = (module, token_label)
    if key in _sessions:
        return _sessions[key]
    lib = pkcs11.lib(module)
    try:
        token = lib.get_token(token_label=token_label)
    except p11e.NoSuchToken:
        # a token initialised after the library was: read the slots again
        lib.reinitialize()
        _sessions.clear()
        try:
            token = lib.get_token(token_label=token_label)
        except p11e.NoSuchToken:
            raise KeyStoreUnavailable(f"There is no PKCS#11 token '{token_label}'.") from None
    try:
        session = token.open(user_pin=pin, rw=True)
    except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
        raise KeyStoreUnavailable(
            f"PKCS11_PIN does not log in to the PKCS#11 token '{token_label}'."
        ) from None
    _sessions[key] = session
    return session


def reset() -> None:
    """Forget sessions and re-read the token list (a test that made a new token)."""
    import pkcs11

    with _lock:
        _sessions.clear()
        module = str(getattr(settings, "PKCS11_MODULE", "") or "")
        if module and os.path.exists(module):
            pkcs11.lib(module).reinitialize()


def key_generate(*, key_type: str, label: str) -> tuple[TokenKey, PublicKeyTypes]:
    """A new non-extractable, sensitive signing key pair in the configured token."""
    from pkcs11 import Attribute, MechanismFlag
    from pkcs11 import KeyType as P11KeyType
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

    _config()
    token_label = default_token_label()
    key_id = os.urandom(16)
    private = {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.PRIVATE: True,
    }
    kt = KeyType(key_type)
    caps = MechanismFlag.SIGN | MechanismFlag.VERIFY
    with _lock:
        session = _session(token_label)
        if kt in _EC:
            curve = _EC[kt][0]
            params = session.create_domain_parameters(
                P11KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)},
                local=True,
            )
            pub, _priv = params.generate_keypair(
                store=True, id=key_id, label=label, capabilities=caps, private_template=private
            )
            public = serialization.load_der_public_key(encode_ec_public_key(pub))
        else:
            pub, _priv = session.generate_keypair(
                P11KeyType.RSA,
                int(kt.value.split("-")[1]),
                store=True,
                id=key_id,
                label=label,
                capabilities=caps,
                private_template=private,
            )
            public = rsa.RSAPublicNumbers(
                int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(pub[Attribute.MODULUS], "big"),
            ).public_key()
    return TokenKey(token_label, label, key_id.hex()), public


def key_attributes(key: TokenKey) -> dict[str, bool]:
    """The private key's SENSITIVE / EXTRACTABLE / NEVER_EXTRACTABLE flags (for checks)."""
    from pkcs11 import Attribute

    with _lock:
        priv = _private_key(key)
        return {
            "sensitive": bool(priv[Attribute.SENSITIVE]),
            "extractable": bool(priv[Attribute.EXTRACTABLE]),
            "never_extractable": bool(priv[Attribute.NEVER_EXTRACTABLE]),
        }


def _private_key(key: TokenKey) -> Any:
    from pkcs11 import ObjectClass
    from pkcs11 import exceptions as p11e

    session = _session(key.token_label)
    try:
        return session.get_key(
            object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(key.key_id), label=key.key_label
        )
    except (p11e.NoSuchKey, p11e.MultipleObjectsReturned):
        raise KeyStoreUnavailable(
            f"The PKCS#11 token '{key.token_label}' holds no single key "
            f"'{key.key_label}' with the CA's key id."
        ) from None


def key_check(key: TokenKey) -> None:
    """Raise KeyStoreUnavailable unless the token is reachable and holds the key."""
    with _lock:
        _private_key(key)


def signer(
    key: TokenKey, *, key_type: str
) -> Callable[[x509.CertificateBuilder], x509.Certificate]:
    """A function that signs certificate builders with the token key (one key lookup)."""
    from pkcs11 import Mechanism

    with _lock:
        priv = _private_key(key)
    kt = KeyType(key_type)
    is_ec = kt in _EC
    digest_name, half = (_EC[kt][1], _EC[kt][2]) if is_ec else ("sha256", 0)
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 = (
        hashes.SHA512()
        if digest_name == "sha512"
        else hashes.SHA384()
        if digest_name == "sha384"
        else hashes.SHA256()
    )
    reference = _reference_key(kt)

    def sign_tbs(tbs: bytes) -> bytes:
        with _lock:
            if is_ec:
                digest = hashlib.new(digest_name, tbs).digest()
                raw = priv.sign(digest, mechanism=Mechanism.ECDSA)
            else:
                return bytes(priv.sign(tbs, mechanism=Mechanism.SHA256_RSA_PKCS))
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def sign(builder: x509.CertificateBuilder) -> x509.Certificate:
        # The reference key only fixes the signatureAlgorithm inside the TBS (the same
        # OID and parameters for any key of the type); its signature is thrown away.
        draft = builder.sign(reference, algorithm)
        return certificate_assemble(draft, sign_tbs(draft.tbs_certificate_bytes))

    return sign


def _reference_key(kt: KeyType) -> Any:
    kind = "rsa" if kt.value.startswith("rsa") else "ec"
    if kind not in _reference_keys:
        _reference_keys[kind] = (
            ec.generate_private_key(ec.SECP256R1())
            if kind == "ec"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
    return _reference_keys[kind]


# --- DER: just enough to put a certificate together ----------------------------------------


def _tlv_end(der: bytes, pos: int) -> tuple[int, int]:
    """(start of the contents, end) of the DER element whose tag is at ``pos``."""
    length = der[pos + 1]
    start = pos + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(der[start : start + n], "big")
        start += n
    return start, start + length


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def certificate_assemble(draft: x509.Certificate, signature: bytes) -> x509.Certificate:
    """``draft`` with its signature replaced: SEQUENCE { tbs, algorithm, BIT STRING sig }."""
    der = draft.public_bytes(serialization.Encoding.DER)
    body, _ = _tlv_end(der, 0)
    _, tbs_end = _tlv_end(der, body)
    _, alg_end = _tlv_end(der, tbs_end)
    bits = b"\x00" + signature  # no unused bits
    content = der[body:alg_end] + b"\x03" + _der_length(len(bits)) + bits
    return x509.load_der_x509_certificate(b"\x30" + _der_length(len(content)) + content)
