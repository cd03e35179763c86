"""The versioned JSON API (/api/v1/): authentication, error shape and router mounting.

Every error is ``{"code": "<stable_snake_case>", "detail": "<sentence>"}`` with a 4xx status;
bad input never produces a 500.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer

from .tokens import hash_token


class ApiError(Exception):
    """Raise from an endpoint to answer with a stable error code and a sentence."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class StationTokenAuth(HttpBearer):
    """A station's bearer token; ``request.auth`` becomes the Station."""

    openapi_description = "Station API token (from add_station)."

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        from devices.selectors import station_for_token

        return station_for_token(token)


class StaffTokenAuth(HttpBearer):
    """A staff API token; ``request.auth`` becomes the user."""

    openapi_description = "Staff API token (from create_api_token)."

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        from .models import ApiToken

        row = (
            ApiToken.objects.select_related("user")
            .filter(token_hash=hash_token(token), user__is_active=True, user__is_staff=True)
            .first()
        )
        if row is None:
            return None
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
        request.user = row.user
        return row.user


# --- demo (issue 6): NUL characters are refused before any endpoint sees them ---
NUL_DETAIL = "Text in the request may not contain the NUL control character (\\u0000)."


class NulCharacterError(ValueError):
    """A JSON string holds U+0000, which PostgreSQL text columns cannot store."""


def _has_nul(value: Any) -> bool:
    """True when a decoded JSON value holds U+0000 in any string (keys included)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class PortalParser(Parser):
    """JSON bodies, refusing NUL characters anywhere (keys included).

    Without it a NUL in any text field reached PostgreSQL, which answers with a DataError:
    a 500 on PostgreSQL and a stored NUL on SQLite. Django's form fields refuse NUL the same
    way (ProhibitNullCharactersValidator); this is the API's counterpart.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        data = super().parse_body(request)
        if _has_nul(data):
            raise NulCharacterError(NUL_DETAIL)
        return data
# --- end demo ---


api = NinjaAPI(
    parser=PortalParser(),
    title="Fleet onboarding portal API",
    version="1",
    urls_namespace="api-v1",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def _error(request: HttpRequest, status: int, code: str, detail: str) -> HttpResponse:
    return api.create_response(request, {"code": code, "detail": detail}, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return _error(request, exc.status, exc.code, exc.detail)


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "unauthorized", "A valid bearer token is required.")


_HTTP_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
               429: "rate_limited"}


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, NulCharacterError):  # ninja wraps parser errors in a 400
        return _error(request, 422, "invalid_request", NUL_DETAIL)
    return _error(request, exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), str(exc))


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    parts = []
    for err in exc.errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "payload"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    detail = "The request is not valid: " + "; ".join(parts) + "." if parts else (
        "The request body is not valid JSON of the expected shape."
    )
    return _error(request, 422, "invalid_request", detail)


# --- connections (issue 7): an oversized body is a JSON 413, not Django's HTML 400 ---
@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _error(request, 413, "too_large", "The request body is too large.")
# --- end connections ---


def _mount_routers() -> None:
    from devices.api import router as devices_router
    from provisioning.api import router as provisioning_router
    from signing.api import router as signing_router

    api.add_router("/", signing_router)
    api.add_router("/", devices_router)
    api.add_router("/", provisioning_router)


_mount_routers()
