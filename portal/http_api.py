"""What every router of the JSON API shares: the door's own error, staff authentication and
the JSON parser. The API instance that mounts the routers is ``portal.api``.

Every error is ``{"code": "<stable_snake_case>", "detail": "<sentence>"}`` with a 4xx status;
bad input never produces a 500.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Schema
from ninja.parser import Parser
from ninja.security import HttpBearer

from .errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unavailable,
)
from .tokens import hash_token


class ApiError(Exception):
    """The API door's own refusal, for what only the door can see (body size, JSON syntax)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class ErrorOut(Schema):
    """The error shape of every 4xx answer."""

    code: str
    detail: str


# A service's refusal, by kind, as an HTTP status: the one place the mapping lives.
DOMAIN_ERROR_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (TooLarge, 413),
    (RateLimited, 429),
    (Unavailable, 503),
    (InvalidInput, 422),
)


def domain_error_status(exc: DomainError) -> int:
    for kind, status in DOMAIN_ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return 422


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


NUL_DETAIL = "Text in the request may not contain the NUL control character (\\u0000)."


class NulCharacterError(ValueError):
    """A JSON string holds U+0000, which PostgreSQL text columns cannot store."""


def has_nul(value: Any) -> bool:
    """True when a decoded JSON value holds U+0000 in any string (keys included)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


class PortalParser(Parser):
    """JSON bodies, refusing NUL characters anywhere (keys included).

    Without it a NUL in any text field reached PostgreSQL, which answers with a DataError:
    a 500 on PostgreSQL and a stored NUL on SQLite. Django's form fields refuse NUL the same
    way (ProhibitNullCharactersValidator); this is the API's counterpart.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        data = super().parse_body(request)
        if has_nul(data):
            raise NulCharacterError(NUL_DETAIL)
        return data
