"""The versioned JSON API (/api/v1/): the NinjaAPI instance, its error handlers and the
routers each app contributes. Shared pieces the routers use live in ``portal.http_api``."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from devices.api import router as devices_router
from provisioning.api import router as provisioning_router
from signing.api import router as signing_router

from .errors import DomainError, RateLimited
from .http_api import (
    NUL_DETAIL,
    ApiError,
    JsonTooDeep,
    NulCharacterError,
    PortalParser,
    domain_error_status,
)

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


@api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    response = _error(request, domain_error_status(exc), exc.code, exc.detail)
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "unauthorized", "A valid bearer token is required.")


_HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, NulCharacterError):  # ninja wraps parser errors in a 400
        return _error(request, 422, "invalid_request", NUL_DETAIL)
    if isinstance(exc.__cause__, JsonTooDeep):
        return _error(request, 422, "json_too_deep", str(exc.__cause__))
    return _error(request, exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), str(exc))


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    parts = []
    for err in exc.errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "payload"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    detail = (
        "The request is not valid: " + "; ".join(parts) + "."
        if parts
        else ("The request body is not valid JSON of the expected shape.")
    )
    return _error(request, 422, "invalid_request", detail)


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _error(request, 413, "too_large", "The request body is too large.")


api.add_router("/", signing_router)
api.add_router("/", provisioning_router)
api.add_router("/", devices_router)
