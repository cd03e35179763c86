"""The key-store interface: a CA key signs and says whether a password unlocks it.

No caller gets a private key: :func:`get_key_store` answers ``sign``, ``signer`` (one
unlocked key for a whole signing batch) and ``check_password``, and dispatches on the CA
row's ``key_backend``: ``database`` (the key PKCS#8-encrypted in the row; only this module
decrypts it) or ``pkcs11`` (the key generated in an HSM token, :mod:`signing.hsm`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from . import hsm
from .crypto import signature_hash_for
from .errors import WrongCaPassword
from .models import CertificateAuthority

Signer = Callable[[x509.CertificateBuilder], x509.Certificate]


class KeyStore(Protocol):
    def check_password(self, ca: CertificateAuthority, password: str) -> None:
        """Raise WrongCaPassword (or KeyStoreUnavailable) unless ``password`` unlocks the key."""
        ...

    def sign(
        self, ca: CertificateAuthority, password: str, builder: x509.CertificateBuilder
    ) -> x509.Certificate: ...

    def signer(self, ca: CertificateAuthority, password: str) -> Signer:
        """A function that signs many builders with one unlocked key (a signing batch)."""
        ...

    def needs_password(self, ca: CertificateAuthority) -> bool:
        """Whether the CA's key is unlocked by a per-CA password (not by the HSM's PIN)."""
        ...


def encrypt_private_key(key: CertificateIssuerPrivateKeyTypes, password: str) -> str:
    """PKCS#8 PEM, encrypted with ``password`` (the best encryption cryptography offers)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode("utf-8")),
    ).decode("ascii")


class DatabaseKeyStore:
    """Keys live encrypted in the CertificateAuthority row.

    Decrypted keys are cached per (CA, key blob, password) for the life of the process, so a
    signing batch decrypts once; the cache key holds a hash, never the password itself.
    The key object stays inside this class: callers get signatures.
    """

    def _key(self, ca: CertificateAuthority, password: str) -> CertificateIssuerPrivateKeyTypes:
        return _load_key(ca.alias, ca.private_key_pem, _password_digest(password), password)

    def check_password(self, ca: CertificateAuthority, password: str) -> None:
        self._key(ca, password)

    def needs_password(self, ca: CertificateAuthority) -> bool:
        return True

    def sign(
        self, ca: CertificateAuthority, password: str, builder: x509.CertificateBuilder
    ) -> x509.Certificate:
        return self.signer(ca, password)(builder)

    def signer(self, ca: CertificateAuthority, password: str) -> Signer:
        """Unlock the key and choose the hash once; a batch then only pays for signing."""
        key = self._key(ca, password)
        algorithm = signature_hash_for(key)

        def sign(builder: x509.CertificateBuilder) -> x509.Certificate:
            return builder.sign(key, algorithm)

        return sign


class Pkcs11KeyStore:
    """Keys generated in a PKCS#11 token; the token's PIN (PKCS11_PIN) unlocks them.

    A per-CA password plays no part: ``check_password`` checks that the token is reachable,
    the PIN logs in and the CA's key is there.
    """

    def check_password(self, ca: CertificateAuthority, password: str) -> None:
        hsm.key_check(_token_key(ca))

    def needs_password(self, ca: CertificateAuthority) -> bool:
        return False

    def sign(
        self, ca: CertificateAuthority, password: str, builder: x509.CertificateBuilder
    ) -> x509.Certificate:
        return self.signer(ca, password)(builder)

    def signer(self, ca: CertificateAuthority, password: str) -> Signer:
        return hsm.signer(_token_key(ca), key_type=ca.key_type)


def _token_key(ca: CertificateAuthority) -> hsm.TokenKey:
    return hsm.TokenKey(ca.pkcs11_token_label, ca.pkcs11_key_label, ca.pkcs11_key_id)


class KeyStores:
    """The key store callers use: each CA's own backend."""

    backends: dict[str, KeyStore]

    def __init__(self) -> None:
        self.backends = {
            CertificateAuthority.KeyBackend.DATABASE: DatabaseKeyStore(),
            CertificateAuthority.KeyBackend.PKCS11: Pkcs11KeyStore(),
        }

    def _for(self, ca: CertificateAuthority) -> KeyStore:
        return self.backends[ca.key_backend or CertificateAuthority.KeyBackend.DATABASE]

    def check_password(self, ca: CertificateAuthority, password: str) -> None:
        self._for(ca).check_password(ca, password)

    def needs_password(self, ca: CertificateAuthority) -> bool:
        return self._for(ca).needs_password(ca)

    def sign(
        self, ca: CertificateAuthority, password: str, builder: x509.CertificateBuilder
    ) -> x509.Certificate:
        return self._for(ca).sign(ca, password, builder)

    def signer(self, ca: CertificateAuthority, password: str) -> Signer:
        return self._for(ca).signer(ca, password)


def _password_digest(password: str) -> str:
    import hashlib

    return hashlib.sha256(b"keystore-cache" + password.encode("utf-8")).hexdigest()


_key_cache: dict[tuple[str, int, str], CertificateIssuerPrivateKeyTypes] = {}


def _load_key(alias: str, pem: str, digest: str, password: str) -> CertificateIssuerPrivateKeyTypes:
    cache_key = (alias, hash(pem), digest)
    if cache_key in _key_cache:
        return _key_cache[cache_key]
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password.encode("utf-8"))
    except (ValueError, TypeError):
        raise WrongCaPassword(alias) from None
    if len(_key_cache) > 32:
        _key_cache.clear()
    _key_cache[cache_key] = key  # type: ignore[assignment]
    return key  # type: ignore[return-value]


@lru_cache(maxsize=1)
def get_key_store() -> KeyStores:
    return KeyStores()


def ca_certificate(ca: CertificateAuthority) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.certificate_pem.encode("ascii"))


def aware(dt: datetime) -> datetime:
    from datetime import UTC

    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
