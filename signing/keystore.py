"""The key-store interface: load a CA's private key with its password, sign with it.

Only this module touches private key bytes. Another backend (file, HSM via PKCS#11) can
implement :class:`KeyStore` and be chosen in :func:`get_key_store` without touching callers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from .crypto import signature_hash_for
from .errors import WrongCaPassword
from .models import CertificateAuthority


class KeyStore(Protocol):
    def load_private_key(
        self, ca: CertificateAuthority, password: str
    ) -> CertificateIssuerPrivateKeyTypes: ...

    def sign(
        self, ca: CertificateAuthority, password: str, builder: x509.CertificateBuilder
    ) -> x509.Certificate: ...

    def signer(
        self, ca: CertificateAuthority, password: str
    ) -> Callable[[x509.CertificateBuilder], x509.Certificate]:
        """A function that signs many builders with one unlocked key (a signing batch)."""
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
    """

    def load_private_key(
        self, ca: CertificateAuthority, password: str
    ) -> CertificateIssuerPrivateKeyTypes:
        return _load_key(ca.alias, ca.private_key_pem, _password_digest(password), password)

    def sign(
        self, ca: CertificateAuthority, password: str, builder: x509.CertificateBuilder
    ) -> x509.Certificate:
        key = self.load_private_key(ca, password)
        return builder.sign(key, signature_hash_for(key))

    def signer(
        self, ca: CertificateAuthority, password: str
    ) -> Callable[[x509.CertificateBuilder], x509.Certificate]:
        """Unlock the key and choose the hash once; a batch then only pays for signing."""
        key = self.load_private_key(ca, password)
        algorithm = signature_hash_for(key)

        def sign(builder: x509.CertificateBuilder) -> x509.Certificate:
            return builder.sign(key, algorithm)

        return sign


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
def get_key_store() -> KeyStore:
    return DatabaseKeyStore()


def ca_certificate(ca: CertificateAuthority) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.certificate_pem.encode("ascii"))


def aware(dt: datetime) -> datetime:
    from datetime import UTC

    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
