"""Extends moto's AWS IoT mock where it falls short for JITP and fleet provisioning.

`apply()` patches moto's `IoTBackend` and `IoTResponse` classes in place while a stand-in
runs (reference-counted; `revert()` undoes it), so the ThreadedMotoServer, the MQTT front
and tests all see the same behaviour. The patches live by concern: CA certificates in
``iot_ca``, provisioning templates in ``iot_templates``, certificates leaving ACTIVE in
``certificates``, what they share in ``iot_state``; this module issues the certificates
AWS itself would and holds the endpoint. Together they give:

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
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from moto.core.config import default_user_config
from moto.iot.exceptions import (
    InvalidRequestException,
)
from moto.iot.models import FakeCertificate, FakeEndpoint, IoTBackend
from moto.iot.responses import IoTResponse

from . import certificates, iot_ca, iot_templates, pki
from .iot_state import BACKEND_LOCK, data_endpoint
from .iot_state import fingerprint as fingerprint

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


# ------------------------------------------------------------------ backend patches


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
            **iot_ca.BACKEND_PATCHES,
            "describe_endpoint": _describe_endpoint,
            "_generate_certificate_pem": _generate_certificate_pem,
            "create_certificate_from_csr": _create_certificate_from_csr,
            **iot_templates.BACKEND_PATCHES,
        }.items():
            _patch(IoTBackend, name, fn)
        moto_own = {n: getattr(IoTBackend, n) for n in ("update_certificate", "delete_certificate")}
        for name, fn in certificates.make_patches(moto_own).items():
            _patch(IoTBackend, name, fn)
        for name, fn in {
            **iot_ca.RESPONSE_PATCHES,
            **iot_templates.RESPONSE_PATCHES,
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
