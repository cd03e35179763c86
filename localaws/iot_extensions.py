"""Extends moto's AWS IoT mock where it falls short for JITP and fleet provisioning.

Applied once, at import (`apply()` is idempotent). Everything here patches moto's
`IoTBackend` and `IoTResponse` classes in place, so the ThreadedMotoServer, the MQTT front
and tests all see the same behaviour:

* register_ca_certificate: certificateMode (DEFAULT / SNI_ONLY), verification certificate
  (CN == registration code, signed by the CA), BasicConstraints CA:true, duplicates,
  allowAutoRegistration, registrationConfig (templateBody + roleArn, or templateName);
* update_ca_certificate (status, auto-registration, registration config), describe with
  autoRegistrationStatus/certificateMode, list_ca_certificates;
* list_certificates_by_ca with AWS's paging (pageSize, marker / nextMarker);
* provisioning templates (JITP and FLEET_PROVISIONING) with versions;
* describe_endpoint stable per account and region;
* a stable registration code per account and region, as AWS has;
* certificates AWS would issue (CreateKeysAndCertificate, CreateCertificateFromCsr) are
  signed by the stand-in "Amazon" CA, and from the CSR's own public key;
* certificates leaving ACTIVE (UpdateCertificate, DeleteCertificate) as in ``certificates``.

It passes 400 lines because moto is patched as one reference-counted unit (applied while a
stand-in runs, reverted after); each patch is small and they share that life cycle.
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
from moto.core.config import default_user_config
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.iot import models as iot_models
from moto.iot.exceptions import (
    InvalidRequestException,
    IoTClientError,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    VersionsLimitExceededException,
)
from moto.iot.models import FakeCaCertificate, FakeCertificate, FakeEndpoint, IoTBackend
from moto.iot.responses import IoTResponse

from . import certificates, pki

#: Serialises the stand-in's own multi-step writes (JITP, fleet provisioning) to moto.
BACKEND_LOCK = threading.RLock()

TEMPLATE_TYPES = ("JITP", "FLEET_PROVISIONING")
MAX_TEMPLATE_VERSIONS = 5


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


# ------------------------------------------------------------------ Amazon CA

_AMAZON: dict[str, Any] = {}


def set_amazon_ca(key: pki.PrivateKey, cert: x509.Certificate) -> None:
    """Use this CA for every certificate 'AWS' issues (done by LocalAws at start)."""
    _AMAZON["key"], _AMAZON["cert"] = key, cert


def amazon_ca() -> tuple[pki.PrivateKey, x509.Certificate]:
    """The stand-in Amazon CA (a throwaway one when LocalAws did not set one)."""
    if "key" not in _AMAZON:
        set_amazon_ca(*pki.make_ca("AWS IoT Certificate (localaws stand-in)", "Amazon"))
    return _AMAZON["key"], _AMAZON["cert"]


def issue_certificate(public_key: object, subject: x509.Name | None = None) -> str:
    """Sign `public_key` with the Amazon CA; PEM. AWS uses a fixed subject."""
    key, cert = amazon_ca()
    subject = subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
    issued = pki.sign_public_key(key, cert, subject, public_key, days=365 * 30)
    return issued.public_bytes(serialization.Encoding.PEM).decode()


# ------------------------------------------------------------------ helpers


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


def _validate_registration_config(backend: IoTBackend, config: dict[str, Any] | None) -> None:
    if not config:
        return
    name = config.get("templateName")
    body = config.get("templateBody")
    if name and body:
        raise InvalidRequestException(
            "registrationConfig takes either templateName or templateBody, not both."
        )
    if name:
        tpl = ext(backend).templates.get(name)
        if tpl is None:
            raise ResourceNotFoundException(f"The provisioning template {name} does not exist.")
        if tpl.type != "JITP":
            raise InvalidRequestException(f"The provisioning template {name} is not of type JITP.")
    if body:
        _parse_template_body(body)
        if not config.get("roleArn"):
            raise InvalidRequestException(
                "registrationConfig.roleArn is required with templateBody."
            )


def _parse_template_body(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestException("The template body is not valid JSON.") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("Resources", {}), dict):
        raise InvalidRequestException("The template body must be an object with Resources.")
    return parsed


# ------------------------------------------------------------------ backend patches


def _get_registration_code(self: IoTBackend) -> str:
    return ext(self).registration_code


def _register_ca_certificate(
    self: IoTBackend,
    ca_certificate: str,
    set_as_active: bool,
    registration_config: dict[str, str] | None,
    verification_certificate: str | None = None,
    allow_auto_registration: bool = False,
    certificate_mode: str | None = None,
) -> FakeCaCertificate:
    mode = certificate_mode or "DEFAULT"
    if mode not in ("DEFAULT", "SNI_ONLY"):
        raise InvalidRequestException(f"Unknown certificateMode {mode}.")
    ca = load_pem_cert(ca_certificate, "CA certificate")
    if not is_ca(ca):
        raise CertificateValidationException(
            "CA certificate is not valid. The CA certificate does not have the "
            "basicConstraints extension as true."
        )
    now = dt.datetime.now(dt.UTC)
    if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
        raise CertificateValidationException("CA certificate is expired or not yet valid.")
    cert_id = fingerprint(ca)
    for existing in self.ca_certificates.values():
        if fingerprint(load_pem_cert(existing.certificate_pem, "CA certificate")) == cert_id:
            raise ResourceAlreadyExistsException(
                "The certificate is already provisioned or registered",
                existing.certificate_id,
                existing.arn,
            )
    if mode == "DEFAULT":
        if not verification_certificate:
            raise InvalidRequestException(
                "A verification certificate is required to register a CA in DEFAULT mode."
            )
        ver = load_pem_cert(verification_certificate, "verification certificate")
        if cn_of(ver) != ext(self).registration_code:
            raise CertificateValidationException(
                "The verification certificate's Common Name does not match the registration code."
            )
        if not signed_by(ver, ca):
            raise CertificateValidationException(
                "The verification certificate is not signed by the CA certificate."
            )
    _validate_registration_config(self, registration_config)
    certificate = FakeCaCertificate(
        ca_certificate=ca_certificate,
        status="ACTIVE" if set_as_active else "INACTIVE",
        account_id=self.account_id,
        region_name=self.region_name,
        registration_config=registration_config or {},
    )
    certificate.certificate_id = cert_id
    certificate.arn = certificate.arn.rsplit(":", 1)[0] + f":cacert/{cert_id}"
    certificate.auto_registration_status = "ENABLE" if allow_auto_registration else "DISABLE"  # type: ignore[attr-defined]
    certificate.certificate_mode = mode  # type: ignore[attr-defined]
    certificate.validity_not_before = ca.not_valid_before_utc
    certificate.validity_not_after = ca.not_valid_after_utc
    self.ca_certificates[certificate.certificate_id] = certificate
    return certificate


def _update_ca_certificate(
    self: IoTBackend,
    certificate_id: str,
    new_status: str | None,
    config: dict[str, str] | None,
    new_auto_registration_status: str | None = None,
    remove_auto_registration: bool = False,
) -> None:
    cert = self.describe_ca_certificate(certificate_id)
    if new_status is not None:
        if new_status not in ("ACTIVE", "INACTIVE"):
            raise InvalidRequestException(f"Invalid CA certificate status {new_status}.")
        cert.status = new_status
    if new_auto_registration_status is not None:
        if new_auto_registration_status not in ("ENABLE", "DISABLE"):
            raise InvalidRequestException(
                f"Invalid auto-registration status {new_auto_registration_status}."
            )
        cert.auto_registration_status = new_auto_registration_status  # type: ignore[attr-defined]
    if config is not None:
        _validate_registration_config(self, config)
        cert.registration_config = config
    if remove_auto_registration:
        cert.registration_config = {}
    cert.last_modified_date = utcnow()


def _describe_endpoint(self: IoTBackend, endpoint_type: str) -> FakeEndpoint:
    endpoint = FakeEndpoint(endpoint_type, self.region_name)
    ats = data_endpoint(self.account_id, self.region_name)
    prefix = ats.split("-ats.", 1)[0]
    endpoint.endpoint = {
        "iot:Data-ATS": ats,
        "iot:Data": f"{prefix}.iot.{self.region_name}.amazonaws.com",
        "iot:CredentialProvider": f"{prefix}.credentials.iot.{self.region_name}.amazonaws.com",
        "iot:Jobs": f"{prefix}.jobs.iot.{self.region_name}.amazonaws.com",
    }[endpoint_type]
    self.endpoint = endpoint
    return endpoint


def _generate_certificate_pem(
    self: IoTBackend, domain_name: str, subject: x509.Name, key: Any = None
) -> str:
    if key is None:
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
    return issue_certificate(key.public_key())


def _create_certificate_from_csr(
    self: IoTBackend, csr: str, set_as_active: bool
) -> FakeCertificate:
    pem = issue_certificate_from_csr(csr)
    return self.register_certificate(
        pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE"
    )


def issue_certificate_from_csr(csr_pem: str) -> str:
    """Check a CSR's signature and issue an Amazon-CA certificate for its key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except (ValueError, AttributeError) as exc:
        raise InvalidRequestException("The certificate signing request is not valid PEM.") from exc
    if not csr.is_signature_valid:
        raise InvalidRequestException("The certificate signing request signature is invalid.")
    return issue_certificate(csr.public_key())


def _list_ca_certificates(self: IoTBackend, template_name: str | None = None) -> list[Any]:
    cas = list(self.ca_certificates.values())
    if template_name:
        cas = [c for c in cas if (c.registration_config or {}).get("templateName") == template_name]
    return cas


def _ca_description(cert: FakeCaCertificate) -> dict[str, Any]:
    d = cert.to_description_dict()
    d.pop("transferData", None)
    d["autoRegistrationStatus"] = getattr(cert, "auto_registration_status", "DISABLE")
    d["certificateMode"] = getattr(cert, "certificate_mode", "DEFAULT")
    d["customerVersion"] = 1
    d["generationId"] = cert.certificate_id[:32]
    return d


# ---------------------------------------------------------- provisioning templates


def _tpl(self: IoTBackend, name: str) -> ProvisioningTemplate:
    tpl = ext(self).templates.get(name)
    if tpl is None:
        raise ResourceNotFoundException(f"The provisioning template {name} does not exist.")
    return tpl


def _create_provisioning_template(
    self: IoTBackend,
    name: str,
    body: str,
    role_arn: str,
    *,
    template_type: str | None,
    enabled: bool,
    description: str | None,
    hook: dict[str, Any] | None,
) -> ProvisioningTemplate:
    ttype = template_type or "FLEET_PROVISIONING"
    if ttype not in TEMPLATE_TYPES:
        raise InvalidRequestException(f"Unknown provisioning template type {ttype}.")
    if not name:
        raise InvalidRequestException("templateName is required.")
    if name in ext(self).templates:
        raise ResourceAlreadyExistsException(
            f"A provisioning template named {name} already exists.", name, name
        )
    if not role_arn:
        raise InvalidRequestException("provisioningRoleArn is required.")
    _parse_template_body(body)
    if hook and ttype == "JITP":
        raise InvalidRequestException("A JITP template cannot have a pre-provisioning hook.")
    arn = f"arn:aws:iot:{self.region_name}:{self.account_id}:provisioningtemplate/{name}"
    tpl = ProvisioningTemplate(
        name=name,
        arn=arn,
        type=ttype,
        enabled=bool(enabled),
        role_arn=role_arn,
        description=description or "",
        pre_provisioning_hook=hook,
        versions=[TemplateVersion(1, body)],
    )
    ext(self).templates[name] = tpl
    return tpl


def _template_summary(t: ProvisioningTemplate) -> dict[str, Any]:
    return {
        "templateArn": t.arn,
        "templateName": t.name,
        "description": t.description,
        "creationDate": t.created,
        "lastModifiedDate": t.modified,
        "enabled": t.enabled,
        "type": t.type,
    }


# ------------------------------------------------------------------ response patches


def _bool(resp: IoTResponse, name: str) -> bool:
    """A boolean parameter whether it came as JSON or as a query-string word."""
    value = resp._get_param(name, False)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _r_register_ca_certificate(self: IoTResponse) -> ActionResult:
    cert = _register_ca_certificate(
        self.iot_backend,
        ca_certificate=self._get_param("caCertificate"),
        set_as_active=_bool(self, "setAsActive"),
        registration_config=self._get_param("registrationConfig"),
        verification_certificate=self._get_param("verificationCertificate"),
        allow_auto_registration=_bool(self, "allowAutoRegistration"),
        certificate_mode=self._get_param("certificateMode"),
    )
    return ActionResult({"certificateId": cert.certificate_id, "certificateArn": cert.arn})


def _r_update_ca_certificate(self: IoTResponse) -> ActionResult:
    _update_ca_certificate(
        self.iot_backend,
        certificate_id=self.path.split("/")[-1],
        new_status=self._get_param("newStatus"),
        config=self._get_param("registrationConfig"),
        new_auto_registration_status=self._get_param("newAutoRegistrationStatus"),
        remove_auto_registration=_bool(self, "removeAutoRegistration"),
    )
    return EmptyResult()


def _r_describe_ca_certificate(self: IoTResponse) -> ActionResult:
    cert = self.iot_backend.describe_ca_certificate(certificate_id=self.path.split("/")[-1])
    return ActionResult(
        {
            "certificateDescription": _ca_description(cert),
            "registrationConfig": cert.registration_config or {},
        }
    )


def _r_list_ca_certificates(self: IoTResponse) -> ActionResult:
    cas = _list_ca_certificates(self.iot_backend, template_name=self._get_param("templateName"))
    if self._get_param("ascendingOrder") is False:
        cas = list(reversed(cas))
    return ActionResult(
        {
            "certificates": [
                {
                    "certificateArn": c.arn,
                    "certificateId": c.certificate_id,
                    "status": c.status,
                    "creationDate": c.creation_date,
                }
                for c in cas
            ]
        }
    )


def _r_list_certificates_by_ca(self: IoTResponse) -> ActionResult:
    """ListCertificatesByCA with AWS's paging (``pageSize`` up to 250, ``marker`` /
    ``nextMarker``); moto answers every certificate at once."""
    ca_id = self._get_param("caCertificateId")
    certs = sorted(
        (c for c in self.iot_backend.certificates.values() if c.ca_certificate_id == ca_id),
        key=lambda c: (c.creation_date, c.certificate_id),
    )
    size = max(1, min(250, int(self._get_param("pageSize") or 25)))
    start = int(self._get_param("marker") or 0)
    page = certs[start : start + size]
    out: dict[str, Any] = {
        "certificates": [
            {
                "certificateArn": c.arn,
                "certificateId": c.certificate_id,
                "status": c.status,
                "creationDate": c.creation_date,
            }
            for c in page
        ]
    }
    if start + size < len(certs):
        out["nextMarker"] = str(start + size)
    return ActionResult(out)


def _r_create_provisioning_template(self: IoTResponse) -> ActionResult:
    tpl = _create_provisioning_template(
        self.iot_backend,
        self._get_param("templateName"),
        self._get_param("templateBody"),
        self._get_param("provisioningRoleArn"),
        template_type=self._get_param("type"),
        enabled=_bool(self, "enabled"),
        description=self._get_param("description"),
        hook=self._get_param("preProvisioningHook"),
    )
    return ActionResult(
        {
            "templateArn": tpl.arn,
            "templateName": tpl.name,
            "defaultVersionId": tpl.default_version_id,
        }
    )


def _r_describe_provisioning_template(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    out = _template_summary(t)
    out.update(
        {
            "defaultVersionId": t.default_version_id,
            "templateBody": t.body,
            "provisioningRoleArn": t.role_arn,
        }
    )
    if t.pre_provisioning_hook:
        out["preProvisioningHook"] = t.pre_provisioning_hook
    return ActionResult(out)


def _r_list_provisioning_templates(self: IoTResponse) -> ActionResult:
    templates = ext(self.iot_backend).templates.values()
    return ActionResult({"templates": [_template_summary(t) for t in templates]})


def _r_update_provisioning_template(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    if self._get_param("description") is not None:
        t.description = self._get_param("description")
    if self._get_param("enabled") is not None:
        t.enabled = _bool(self, "enabled")
    if self._get_param("provisioningRoleArn"):
        t.role_arn = self._get_param("provisioningRoleArn")
    if self._get_param("preProvisioningHook"):
        t.pre_provisioning_hook = self._get_param("preProvisioningHook")
    if self._get_param("removePreProvisioningHook"):
        t.pre_provisioning_hook = None
    vid = self._get_param("defaultVersionId")
    if vid is not None:
        if int(vid) not in {v.version_id for v in t.versions}:
            raise ResourceNotFoundException(f"Version {vid} of template {t.name} does not exist.")
        t.default_version_id = int(vid)
    t.modified = utcnow()
    return EmptyResult()


def _r_delete_provisioning_template(self: IoTResponse) -> ActionResult:
    name = self._get_param("templateName")
    _tpl(self.iot_backend, name)
    for ca in self.iot_backend.ca_certificates.values():
        if (ca.registration_config or {}).get("templateName") == name:
            raise DeleteConflictException(
                f"The provisioning template {name} is in use by CA certificate {ca.certificate_id}."
            )
    del ext(self.iot_backend).templates[name]
    return EmptyResult()


def _r_create_provisioning_template_version(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    body = self._get_param("templateBody")
    _parse_template_body(body)
    if len(t.versions) >= MAX_TEMPLATE_VERSIONS:
        raise VersionsLimitExceededException(t.name)
    vid = max(v.version_id for v in t.versions) + 1
    t.versions.append(TemplateVersion(vid, body))
    is_default = _bool(self, "setAsDefault")
    if is_default:
        t.default_version_id = vid
    t.modified = utcnow()
    return ActionResult(
        {
            "templateArn": t.arn,
            "templateName": t.name,
            "versionId": vid,
            "isDefaultVersion": is_default,
        }
    )


def _version_dict(t: ProvisioningTemplate, v: TemplateVersion, body: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "versionId": v.version_id,
        "creationDate": v.created,
        "isDefaultVersion": v.version_id == t.default_version_id,
    }
    if body:
        d["templateBody"] = v.body
    return d


def _find_version(t: ProvisioningTemplate, vid: Any) -> TemplateVersion:
    for v in t.versions:
        if str(v.version_id) == str(vid):
            return v
    raise ResourceNotFoundException(f"Version {vid} of template {t.name} does not exist.")


def _r_describe_provisioning_template_version(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    return ActionResult(_version_dict(t, _find_version(t, self._get_param("versionId")), True))


def _r_list_provisioning_template_versions(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    return ActionResult({"versions": [_version_dict(t, v, False) for v in t.versions]})


def _r_delete_provisioning_template_version(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    v = _find_version(t, self._get_param("versionId"))
    if v.version_id == t.default_version_id:
        raise DeleteConflictException("The default version of a template cannot be deleted.")
    t.versions.remove(v)
    return EmptyResult()


_active = 0
_originals: list[tuple[type, str, Any]] = []


def _patch(cls: type, name: str, fn: Any) -> None:
    _originals.append((cls, name, cls.__dict__.get(name, _MISSING)))
    setattr(cls, name, fn)


_MISSING = object()


def apply() -> None:
    """Patch moto while at least one stand-in runs (reference-counted; see :func:`revert`).

    moto's backends are process-global, so patching at import would change moto for every
    other user in the process (e.g. tests that deliberately use plain moto).
    """
    global _active
    with BACKEND_LOCK:
        _active += 1
        if _active > 1:
            return
        iot_config = default_user_config.setdefault("iot", {})
        _originals.append((dict, "use_valid_cert", iot_config.get("use_valid_cert", _MISSING)))
        iot_config["use_valid_cert"] = True
        base_call_action = IoTResponse.call_action

        def call_action_locked(self: IoTResponse) -> Any:
            # moto's werkzeug threads and the MQTT front share the backend: one writer at a time.
            with BACKEND_LOCK:
                return base_call_action(self)

        _patch(IoTResponse, "call_action", call_action_locked)
        for name, fn in {
            "get_registration_code": _get_registration_code,
            "register_ca_certificate": _register_ca_certificate,
            "update_ca_certificate": _update_ca_certificate,
            "describe_endpoint": _describe_endpoint,
            "_generate_certificate_pem": _generate_certificate_pem,
            "create_certificate_from_csr": _create_certificate_from_csr,
            "list_ca_certificates": _list_ca_certificates,
            "create_provisioning_template": _create_provisioning_template,
        }.items():
            _patch(IoTBackend, name, fn)
        moto_own = {n: getattr(IoTBackend, n) for n in ("update_certificate", "delete_certificate")}
        for name, fn in certificates.make_patches(moto_own).items():
            _patch(IoTBackend, name, fn)
        for name, fn in {
            "register_ca_certificate": _r_register_ca_certificate,
            "update_ca_certificate": _r_update_ca_certificate,
            "describe_ca_certificate": _r_describe_ca_certificate,
            "list_ca_certificates": _r_list_ca_certificates,
            "list_certificates_by_ca": _r_list_certificates_by_ca,
            "create_provisioning_template": _r_create_provisioning_template,
            "describe_provisioning_template": _r_describe_provisioning_template,
            "list_provisioning_templates": _r_list_provisioning_templates,
            "update_provisioning_template": _r_update_provisioning_template,
            "delete_provisioning_template": _r_delete_provisioning_template,
            "create_provisioning_template_version": _r_create_provisioning_template_version,
            "describe_provisioning_template_version": _r_describe_provisioning_template_version,
            "list_provisioning_template_versions": _r_list_provisioning_template_versions,
            "delete_provisioning_template_version": _r_delete_provisioning_template_version,
        }.items():
            _patch(IoTResponse, name, fn)


def revert() -> None:
    """Undo :func:`apply` when the last stand-in in this process stops."""
    global _active
    with BACKEND_LOCK:
        if _active == 0:
            return
        _active -= 1
        if _active:
            return
        while _originals:
            cls, name, original = _originals.pop()
            if cls is dict:
                iot_config: dict[str, Any] = default_user_config.setdefault("iot", {})  # type: ignore[assignment]
                if original is _MISSING:
                    iot_config.pop(name, None)
                else:
                    iot_config[name] = original
            elif original is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
