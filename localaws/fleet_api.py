"""AWS IoT's fleet-provisioning MQTT API in the stand-in: ``$aws/certificates/create``,
``create-from-csr`` and ``$aws/provisioning-templates/<name>/provision``, answered by the
MQTT front inside a claim certificate's session (JSON only), never reaching the broker.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import TYPE_CHECKING, Any

from cryptography import x509
from moto.core.exceptions import JsonRESTError
from moto.iot.models import FakeCertificate, IoTBackend

from . import iot_state as ix
from .provisioning import TemplateError, apply_template, certificate_parameters

if TYPE_CHECKING:
    from .connect import FrontStats

TOKEN_LIFETIME = dt.timedelta(hours=1)


def answer(b: IoTBackend, stats: FrontStats, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
    """Answer one fleet-provisioning MQTT API request: [(topic, payload)]."""
    if not topic.endswith("/json"):
        return [
            (
                topic + "/rejected",
                _rejection(400, "InvalidPayload", "Only the JSON API is emulated."),
            )
        ]
    try:
        request = json.loads(payload or b"{}")
        if not isinstance(request, dict):
            raise ValueError("not an object")
    except ValueError:
        return [
            (
                topic + "/rejected",
                _rejection(400, "InvalidPayload", "Payload is not a JSON object."),
            )
        ]
    with ix.BACKEND_LOCK:
        try:
            if topic == "$aws/certificates/create/json":
                body = _create_keys(b, stats)
            elif topic == "$aws/certificates/create-from-csr/json":
                body = _create_from_csr(b, stats, request)
            elif topic.startswith("$aws/provisioning-templates/") and topic.endswith(
                "/provision/json"
            ):
                name = topic[len("$aws/provisioning-templates/") : -len("/provision/json")]
                body = _register_thing(b, stats, name, request)
            else:
                raise _FleetError(404, "NotFound", f"Unknown API topic {topic}.")
        except _FleetError as exc:
            return [(topic + "/rejected", _rejection(exc.status, exc.code, str(exc)))]
        except JsonRESTError as exc:
            return [(topic + "/rejected", _rejection(400, exc.error_type, exc.message))]
    if "clientToken" in request:
        body["clientToken"] = request["clientToken"]
    return [(topic + "/accepted", json.dumps(body).encode())]


def _token(b: IoTBackend, cert: FakeCertificate) -> str:
    token = secrets.token_urlsafe(48)
    tokens = ix.ext(b).ownership_tokens
    now = dt.datetime.now(dt.UTC)
    for k in [k for k, v in tokens.items() if v.expires < now]:
        del tokens[k]
    tokens[token] = ix.OwnershipToken(cert.certificate_id, now + TOKEN_LIFETIME)
    return token


def _create_keys(b: IoTBackend, stats: FrontStats) -> dict[str, Any]:
    cert, keys = b.create_keys_and_certificate(set_as_active=False)
    stats.fleet_certificates += 1
    return {
        "certificateId": cert.certificate_id,
        "certificatePem": cert.certificate_pem,
        "privateKey": keys["PrivateKey"],
        "certificateOwnershipToken": _token(b, cert),
    }


def _create_from_csr(b: IoTBackend, stats: FrontStats, request: dict[str, Any]) -> dict[str, Any]:
    csr = request.get("certificateSigningRequest")
    if not isinstance(csr, str) or not csr.strip():
        raise _FleetError(400, "InvalidPayload", "certificateSigningRequest is required.")
    cert = b.create_certificate_from_csr(csr, set_as_active=False)
    stats.fleet_certificates += 1
    return {
        "certificateId": cert.certificate_id,
        "certificatePem": cert.certificate_pem,
        "certificateOwnershipToken": _token(b, cert),
    }


def _register_thing(
    b: IoTBackend, stats: FrontStats, name: str, request: dict[str, Any]
) -> dict[str, Any]:
    tpl = ix.ext(b).templates.get(name)
    if tpl is None or tpl.type != "FLEET_PROVISIONING":
        raise _FleetError(404, "ResourceNotFound", f"No fleet provisioning template {name}.")
    if not tpl.enabled:
        raise _FleetError(400, "InvalidRequest", f"The template {name} is disabled.")
    token = request.get("certificateOwnershipToken")
    owned = ix.ext(b).ownership_tokens.get(token) if isinstance(token, str) else None
    if owned is None or owned.expires < dt.datetime.now(dt.UTC):
        raise _FleetError(
            400,
            "InvalidCertificateOwnershipToken",
            "The certificate ownership token is invalid.",
        )
    cert = b.certificates.get(owned.certificate_id)
    if cert is None:
        raise _FleetError(404, "ResourceNotFound", "The certificate no longer exists.")
    params = request.get("parameters") or {}
    if not isinstance(params, dict):
        raise _FleetError(400, "InvalidParameters", "parameters must be an object.")
    supplied = {str(k): v for k, v in params.items()}
    leaf = x509.load_pem_x509_certificate(cert.certificate_pem.encode())
    supplied.update(certificate_parameters(leaf, cert.certificate_id))
    for k, v in params.items():
        supplied[str(k)] = v
    try:
        result = apply_template(b, tpl.body, supplied, cert)
    except TemplateError as exc:
        raise _FleetError(400, "InvalidParameters", str(exc)) from exc
    ix.ext(b).ownership_tokens.pop(str(token), None)
    stats.fleet_provisioned += 1
    out: dict[str, Any] = {"deviceConfiguration": result["deviceConfiguration"] or {}}
    if result["thingName"]:
        out["thingName"] = result["thingName"]
    return out


class _FleetError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _rejection(status: int, code: str, message: str) -> bytes:
    return json.dumps({"statusCode": status, "errorCode": code, "errorMessage": message}).encode()
