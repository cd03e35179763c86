"""The state the stand-in keeps beside moto's IoT backend, and what its patches share: AWS's
errors moto lacks, the lock of multi-step writes, provisioning templates, ownership tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from moto.core.utils import utcnow
from moto.iot import models as iot_models
from moto.iot.exceptions import InvalidRequestException, IoTClientError
from moto.iot.models import IoTBackend
from moto.iot.responses import IoTResponse

#: Serialises the stand-in's own multi-step writes (JITP, fleet provisioning) to moto.
BACKEND_LOCK = threading.RLock()


class CertificateValidationException(IoTClientError):
    """AWS's error for a certificate that cannot be used as given."""

    def __init__(self, msg: str) -> None:
        super().__init__("CertificateValidationException", msg)
        self.code = 400


class ConflictingResourceUpdateException(IoTClientError):
    """AWS's error for an update that conflicts with the resource's state."""

    def __init__(self, msg: str) -> None:
        super().__init__("ConflictingResourceUpdateException", msg)
        self.code = 409


class DeleteConflictException(IoTClientError):
    """AWS's error for deleting something still in use."""

    def __init__(self, msg: str) -> None:
        super().__init__("DeleteConflictException", msg)
        self.code = 409


# --------------------------------------------------------------------------- state


@dataclass
class TemplateVersion:
    """One version of a provisioning template body."""

    version_id: int
    body: str
    created: dt.datetime = field(default_factory=utcnow)


@dataclass
class ProvisioningTemplate:
    """A provisioning template as AWS stores it."""

    name: str
    arn: str
    type: str
    enabled: bool
    role_arn: str
    description: str = ""
    pre_provisioning_hook: dict[str, Any] | None = None
    versions: list[TemplateVersion] = field(default_factory=list)
    default_version_id: int = 1
    created: dt.datetime = field(default_factory=utcnow)
    modified: dt.datetime = field(default_factory=utcnow)

    @property
    def body(self) -> str:
        """The default version's body."""
        for v in self.versions:
            if v.version_id == self.default_version_id:
                return v.body
        return self.versions[-1].body


@dataclass
class OwnershipToken:
    """A certificateOwnershipToken handed out by the fleet-provisioning MQTT API."""

    certificate_id: str
    expires: dt.datetime


@dataclass
class ExtState:
    """Stand-in state attached to one moto IoTBackend (reset with it)."""

    registration_code: str = field(default_factory=lambda: secrets.token_hex(32))
    templates: dict[str, ProvisioningTemplate] = field(default_factory=dict)
    ownership_tokens: dict[str, OwnershipToken] = field(default_factory=dict)


def ext(backend: IoTBackend) -> ExtState:
    """The stand-in state of a backend, created on first use."""
    state = backend.__dict__.get("_localaws")
    if state is None:
        state = backend.__dict__.setdefault("_localaws", ExtState())
    return state


def data_endpoint(account_id: str, region: str) -> str:
    """The stable ATS data endpoint of an account and region."""
    prefix = hashlib.sha256(f"{account_id}:{region}".encode()).hexdigest()[:14]
    return f"{prefix}-ats.iot.{region}.amazonaws.com"


def iter_backends() -> list[tuple[str, str, IoTBackend]]:
    """Every IoT backend that exists so far, as (account, region, backend)."""
    out = []
    for account_id, per_region in list(iot_models.iot_backends.items()):
        for region, backend in list(per_region.items()):
            out.append((account_id, region, backend))
    return out


def parse_template_body(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestException("The template body is not valid JSON.") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("Resources", {}), dict):
        raise InvalidRequestException("The template body must be an object with Resources.")
    return parsed


def bool_param(resp: IoTResponse, name: str) -> bool:
    """A boolean parameter whether it came as JSON or as a query-string word."""
    value = resp._get_param(name, False)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def load_pem_cert(pem: str | None, what: str) -> x509.Certificate:
    """Parse a PEM certificate or raise CertificateValidationException naming `what`."""
    if not pem:
        raise InvalidRequestException(f"The {what} is required.")
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise CertificateValidationException(f"The {what} is not a valid PEM certificate.") from exc


def is_ca(cert: x509.Certificate) -> bool:
    """BasicConstraints CA:true."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` directly signed `cert` (name and signature)."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding: the certificate id AWS uses."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cn_of(cert: x509.Certificate) -> str | None:
    """Subject common name, if any."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None
