"""Station API of the signing service (onboarding requests), shapes as in INTERFACES.md.

The body is read by hand (size first, then JSON, then a strict schema) so that a 1 MB body
is a 413 before anything parses it, garbage JSON is a 400 and wrong JSON types are a 422:
never a 500 for bad input. The services' refusals (domain errors) propagate to the API's
DomainError handler, which answers their status and ``{"code", "detail"}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema, Status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from devices.auth import StationTokenAuth
from portal.http_api import NUL_DETAIL, ApiError, ErrorOut, JsonTooDeep, has_nul, json_decode

from .csr import MAX_CSR_BYTES
from .models import OnboardingRequest
from .services import (
    onboarding_request_fetched,
    onboarding_request_for_station,
    onboarding_request_submit,
)

router = Router(tags=["onboarding"])

MAX_BODY_BYTES = MAX_CSR_BYTES + 4096


class RenewalProofIn(BaseModel):
    """A signature by the current certificate's key (docs/agent-protocol.md, "Renewal")."""

    model_config = ConfigDict(strict=True, extra="ignore")

    timestamp: StrictInt
    signature: StrictStr = Field(min_length=1, max_length=2048)


class OnboardingRequestIn(BaseModel):
    """What a station sends: the device, its CSR (PEM), a comment, whether it renews, and for
    a renewal the proof that it holds the current key."""

    model_config = ConfigDict(strict=True, extra="ignore")

    device: StrictStr = Field(min_length=1, max_length=63)
    csr: StrictStr = Field(min_length=1)
    comment: StrictStr = Field(default="", max_length=200)
    renewal: StrictBool = False
    proof: RenewalProofIn | None = None


class OnboardingRequestOut(Schema):
    id: int
    status: str
    device: str
    created: datetime
    renewal: bool
    reason: str | None = None
    certificate: str | None = None
    chain: list[str] | None = None
    not_after: datetime | None = None
    renew_after: datetime | None = None


def _out(row: OnboardingRequest, *, with_certificate: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.pk,
        "status": row.status,
        "device": row.device.name,
        "created": row.created_at,
        "renewal": row.is_renewal,
    }
    if row.reason:
        data["reason"] = row.reason
    if with_certificate and row.status == OnboardingRequest.Status.ISSUED:
        cert = onboarding_request_fetched(request=row)
        if cert is not None:
            data["certificate"] = cert.certificate_pem
            data["chain"] = [cert.ca.certificate_pem]
            data["not_after"] = cert.not_after
            data["renew_after"] = cert.renew_after
    return data


def _parse_body(request: HttpRequest) -> OnboardingRequestIn:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise ApiError(
            413, "too_large", f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB."
        )
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            413, "too_large", f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB."
        ) from None
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(
            413, "too_large", f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB."
        )
    if not body.strip():
        raise ApiError(
            400, "empty_body", 'The request body is empty; send {"device": …, "csr": …}.'
        )
    try:
        data = json_decode(body)
    except JsonTooDeep as exc:
        raise ApiError(422, "json_too_deep", str(exc)) from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "The request body must be a JSON object.")
    if has_nul(data):  # PostgreSQL text cannot hold NUL (the API parser's rule)
        raise ApiError(422, "invalid_request", NUL_DETAIL)
    try:
        return OnboardingRequestIn.model_validate(data)
    except PydanticValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
        raise ApiError(
            422, "invalid_request", "The request is not valid: " + "; ".join(parts) + "."
        ) from None


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The body schema with its nested models inlined (a ``#/$defs`` reference would point
    at the root of the OpenAPI document, where there is no such thing)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


_BODY_SCHEMA = _inline_refs(OnboardingRequestIn.model_json_schema())


@router.post(
    "/onboarding-requests",
    auth=StationTokenAuth(),
    response={
        200: OnboardingRequestOut,
        201: OnboardingRequestOut,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        409: ErrorOut,
        413: ErrorOut,
        422: ErrorOut,
        429: ErrorOut,
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
    summary="Submit a CSR for a device",
    exclude_none=True,
)
def submit_onboarding_request(request: HttpRequest) -> Status:
    """201 with a new request; 200 with the existing one for the same pending device + key."""
    payload = _parse_body(request)
    row, created = onboarding_request_submit(
        station=request.auth,  # type: ignore[attr-defined]
        device_name=payload.device,
        csr=payload.csr,
        comment=payload.comment,
        renewal=payload.renewal,
        proof=payload.proof.model_dump() if payload.proof is not None else None,
    )
    return Status(201 if created else 200, _out(row, with_certificate=False))


@router.get(
    "/onboarding-requests/{request_id}",
    auth=StationTokenAuth(),
    response={200: OnboardingRequestOut, 401: ErrorOut, 404: ErrorOut},
    summary="Read a request; certificate and chain once issued",
    exclude_none=True,
)
def get_onboarding_request(request: HttpRequest, request_id: int) -> HttpResponse | dict:
    row = onboarding_request_for_station(
        station=request.auth,  # type: ignore[attr-defined]
        request_id=request_id,
    )
    return _out(row, with_certificate=True)
