"""CSR validation: every way a station's CSR can be wrong, each with a stable code and a sentence.

Pure cryptography (no database), so the API, the services and the benchmark share one path.
What a CSR *asks for* (subject, extensions) is otherwise ignored: the portal decides the
certificate's content. The one request we refuse outright is to be a CA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from .crypto import KeyType
from .errors import CsrError, CsrTooLarge

MAX_CSR_BYTES = 16 * 1024

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_CSR_LABELS = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"}


@dataclass(frozen=True)
class ValidCsr:
    csr: x509.CertificateSigningRequest
    pem: str
    key_type: str
    public_key_fingerprint: str


def public_key_fingerprint(public_key: object) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex (the same key gives the same value)."""
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def _key_type(public_key: object, accepted: list[str] | None) -> str:
    if isinstance(public_key, dsa.DSAPublicKey):
        raise CsrError(
            "csr_key_type_not_accepted",
            "DSA keys are not accepted; use EC P-256 or RSA with at least 2048 bits.",
        )
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        names = {
            "secp256r1": KeyType.EC_P256,
            "secp384r1": KeyType.EC_P384,
            "secp521r1": KeyType.EC_P521,
        }
        kt = names.get(public_key.curve.name)
        if kt is None:
            raise CsrError(
                "csr_key_type_not_accepted",
                f"The elliptic curve {public_key.curve.name} is not accepted; use P-256, "
                "P-384 or P-521.",
            )
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise CsrError(
                "csr_key_too_small",
                f"RSA keys of {public_key.key_size} bits are too weak; use at least 2048 bits.",
            )
        try:
            kt = KeyType(f"rsa-{public_key.key_size}")
        except ValueError:
            raise CsrError(
                "csr_key_type_not_accepted",
                f"RSA keys of {public_key.key_size} bits are not accepted; use "
                "2048, 3072 or 4096 bits.",
            ) from None
    else:
        raise CsrError(
            "csr_key_type_not_accepted",
            f"Keys of type {type(public_key).__name__} are not accepted; use EC "
            "P-256 or RSA with at least 2048 bits.",
        )
    if accepted is not None and kt.value not in accepted:
        raise CsrError(
            "csr_key_type_not_accepted",
            f"The signing profile does not accept {kt.label} keys; it accepts "
            + ", ".join(KeyType(a).label for a in accepted if a in set(KeyType))
            + ".",
        )
    return kt.value


def _load(data: str | bytes) -> tuple[x509.CertificateSigningRequest, str]:
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if len(raw) > MAX_CSR_BYTES:
        raise CsrTooLarge("csr_too_large", f"The CSR is larger than {MAX_CSR_BYTES // 1024} KiB.")
    if not raw.strip():
        raise CsrError("csr_missing", "The CSR is empty; send a PEM certificate signing request.")
    text = raw.decode("ascii", "replace")
    blocks = _PEM_BLOCK.findall(text)
    labels = set(blocks)
    if labels:
        if any("PRIVATE KEY" in label for label in labels):
            if labels & _CSR_LABELS:
                raise CsrError(
                    "csr_private_key_sent",
                    "The body holds a private key besides the CSR; nothing was stored. "
                    "Never send the private key: send the certificate signing request alone, "
                    "and treat the key as compromised (make a new one).",
                )
            raise CsrError(
                "csr_is_private_key",
                "This is a private key, not a CSR; never send the private key. "
                "Send the certificate signing request.",
            )
        if len(blocks) > 1:
            raise CsrError(
                "csr_multiple_blocks",
                f"The body holds {len(blocks)} PEM blocks; send exactly one certificate "
                "signing request.",
            )
        if not labels & _CSR_LABELS:
            if "CERTIFICATE" in labels:
                raise CsrError(
                    "csr_is_certificate",
                    "This is a certificate, not a CSR; send the certificate signing request.",
                )
            raise CsrError("csr_not_pem", "The PEM block is not a certificate signing request.")
        if "-----END CERTIFICATE REQUEST-----" not in text:
            raise CsrError("csr_truncated", "The CSR is truncated (no END line).")
        try:
            csr = x509.load_pem_x509_csr(raw)
        except ValueError:
            raise CsrError(
                "csr_malformed", "The CSR could not be decoded; it is truncated or corrupted."
            ) from None
    else:
        try:
            csr = x509.load_der_x509_csr(raw)
        except ValueError:
            try:
                x509.load_der_x509_certificate(raw)
            except ValueError:
                raise CsrError("csr_not_pem", "The CSR is neither PEM nor DER encoded.") from None
            raise CsrError(
                "csr_is_certificate",
                "This is a certificate, not a CSR; send the certificate signing request.",
            ) from None
    pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return csr, pem


def csr_validate(data: str | bytes, *, accepted_key_types: list[str] | None = None) -> ValidCsr:
    """Check a CSR as a careful CA would; raise :class:`CsrError` with the first problem."""
    csr, pem = _load(data)
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        raise CsrError(
            "csr_key_type_not_accepted", "The CSR's public key type is not supported."
        ) from None
    except Exception:  # noqa: BLE001  (unknown curves raise several library-specific errors)
        raise CsrError(
            "csr_key_type_not_accepted",
            "The CSR's public key could not be read (unknown curve or key type).",
        ) from None
    key_type = _key_type(public_key, accepted_key_types)
    try:
        valid = csr.is_signature_valid
    except Exception:  # noqa: BLE001
        valid = False
    if not valid:
        raise CsrError(
            "csr_bad_signature",
            "The CSR's self-signature does not verify; it was altered or corrupted.",
        )
    try:
        basic = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    except ValueError:
        raise CsrError("csr_malformed", "The CSR's extensions could not be decoded.") from None
    if basic is not None and basic.ca:
        raise CsrError(
            "csr_requests_ca",
            "The CSR asks for a CA certificate (CA:true); devices get end-entity "
            "certificates only.",
        )
    return ValidCsr(
        csr=csr,
        pem=pem,
        key_type=key_type,
        public_key_fingerprint=public_key_fingerprint(public_key),
    )
