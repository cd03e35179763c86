"""What a renewal request must show before it is accepted (docs/agent-protocol.md).

A renewal (``renewal: true``) needs the device's active certificate from this portal, proof
that the caller holds that certificate's private key, and the certificate's renewal point
(``renew_after``) reached unless staff forced a renewal. The proof is a signature by the
current key over ``fleet-renewal-v1\\n<station>\\n<device>\\n<sha256 hex of the new CSR's
DER>\\n<unix seconds>``, ECDSA with SHA-256 for EC keys, PKCS#1 v1.5 with SHA-256 for RSA
keys, with a timestamp within ``RENEWAL_PROOF_MAX_SKEW`` seconds of the portal's clock.
A station token alone is therefore not enough to get a certificate for another key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from django.conf import settings
from django.utils import timezone

from devices.models import MqttDevice, Station

from ..errors import (
    CertificateExpired,
    CertificateRevoked,
    RenewalInProgress,
    RenewalProofInvalid,
    RenewalProofRequired,
    RenewalTooEarly,
    RenewalWithoutCertificate,
)
from ..models import IssuedCertificate, OnboardingRequest

PROOF_VERSION = "fleet-renewal-v1"


def renewal_proof_message(*, station: str, device: str, csr_der: bytes, timestamp: int) -> bytes:
    """The bytes a renewal proof signs (the agent builds the same string)."""
    digest = hashlib.sha256(csr_der).hexdigest()
    return f"{PROOF_VERSION}\n{station}\n{device}\n{digest}\n{int(timestamp)}".encode()


def _verify(public_key: Any, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def renewal_proof_check(
    *,
    station: Station,
    device_name: str,
    certificate: IssuedCertificate,
    csr: x509.CertificateSigningRequest,
    proof: dict[str, Any] | None,
) -> None:
    """Raise unless ``proof`` is a fresh signature by ``certificate``'s key over this CSR."""
    if not proof:
        raise RenewalProofRequired(
            "A renewal must carry a proof: a signature by the current certificate's key "
            "(see the agent protocol)."
        )
    try:
        timestamp = int(proof["timestamp"])
        signature = base64.b64decode(str(proof["signature"]), validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise RenewalProofInvalid(
            "The renewal proof needs an integer 'timestamp' and a base64 'signature'."
        ) from None
    skew = int(getattr(settings, "RENEWAL_PROOF_MAX_SKEW", 300))
    if abs(time.time() - timestamp) > skew:
        raise RenewalProofInvalid(
            f"The renewal proof's timestamp is more than {skew} s away from the portal's "
            "clock; check the station's clock."
        )
    current = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    message = renewal_proof_message(
        station=station.name,
        device=device_name,
        csr_der=csr.public_bytes(serialization.Encoding.DER),
        timestamp=timestamp,
    )
    if not _verify(current.public_key(), signature, message):
        raise RenewalProofInvalid(
            "The renewal proof does not verify with the key of the device's current certificate."
        )


def renewal_check(
    *,
    station: Station,
    device: MqttDevice | None,
    device_name: str,
    csr: x509.CertificateSigningRequest,
    proof: dict[str, Any] | None,
) -> None:
    """Refuse a renewal without an active certificate, without proof, or before its time."""
    if device is None or device.current_certificate_id is None:
        raise RenewalWithoutCertificate(
            f"Device {device_name!r} holds no certificate from this portal; send a first "
            "onboarding request (renewal: false)."
        )
    cert = device.current_certificate
    assert cert is not None
    if cert.status == IssuedCertificate.Status.REVOKED:
        raise CertificateRevoked(
            f"The certificate of device {device_name!r} was revoked; renewal is refused. Ask "
            "the administrator for a new onboarding."
        )
    if cert.status != IssuedCertificate.Status.ACTIVE:
        raise RenewalWithoutCertificate(
            f"Device {device_name!r} holds no active certificate from this portal; send a "
            "first onboarding request (renewal: false)."
        )
    now = timezone.now()
    if cert.not_after <= now:
        raise CertificateExpired(
            f"The certificate of device {device_name!r} has expired; send a first onboarding "
            "request (renewal: false)."
        )
    renewal_proof_check(
        station=station, device_name=device_name, certificate=cert, csr=csr, proof=proof
    )
    # One renewal point gives one renewal: none while another renewal of the device is open.
    if OnboardingRequest.objects.filter(
        device=device, is_renewal=True, status__in=["pending", "approved"]
    ).exists():
        raise RenewalInProgress(
            f"A renewal of device {device_name!r} is already waiting to be signed; fetch it "
            "instead of sending another."
        )
    forced = cert.renewal_forced_at is not None and cert.renewal_forced_at <= now
    if cert.renew_after > now and not forced:
        raise RenewalTooEarly(
            f"The certificate of device {device_name!r} is not due for renewal before "
            f"{cert.renew_after.isoformat()}; staff can force a renewal."
        )
