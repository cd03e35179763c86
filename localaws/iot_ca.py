"""CA certificates in the stand-in as AWS IoT has them for JITP: registration with its checks
(verification certificate, certificate mode, registration config), update, describe, the
listings with AWS's paging. Patched into moto by ``iot_extensions.apply``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.iot.exceptions import (
    InvalidRequestException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from moto.iot.models import FakeCaCertificate, IoTBackend
from moto.iot.responses import IoTResponse

from .iot_state import (
    CertificateValidationException,
    bool_param,
    cn_of,
    ext,
    fingerprint,
    is_ca,
    load_pem_cert,
    parse_template_body,
    signed_by,
)


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
        parse_template_body(body)
        if not config.get("roleArn"):
            raise InvalidRequestException(
                "registrationConfig.roleArn is required with templateBody."
            )


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


def _r_register_ca_certificate(self: IoTResponse) -> ActionResult:
    cert = _register_ca_certificate(
        self.iot_backend,
        ca_certificate=self._get_param("caCertificate"),
        set_as_active=bool_param(self, "setAsActive"),
        registration_config=self._get_param("registrationConfig"),
        verification_certificate=self._get_param("verificationCertificate"),
        allow_auto_registration=bool_param(self, "allowAutoRegistration"),
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
        remove_auto_registration=bool_param(self, "removeAutoRegistration"),
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


#: IoTBackend methods this module replaces in moto.
BACKEND_PATCHES = {
    "get_registration_code": _get_registration_code,
    "register_ca_certificate": _register_ca_certificate,
    "update_ca_certificate": _update_ca_certificate,
    "list_ca_certificates": _list_ca_certificates,
}

#: IoTResponse handlers this module replaces in moto.
RESPONSE_PATCHES = {
    "register_ca_certificate": _r_register_ca_certificate,
    "update_ca_certificate": _r_update_ca_certificate,
    "describe_ca_certificate": _r_describe_ca_certificate,
    "list_ca_certificates": _r_list_ca_certificates,
    "list_certificates_by_ca": _r_list_certificates_by_ca,
}
