"""What every router of the JSON API shares: the door's own error, staff authentication and
the JSON parser. The API instance that mounts the routers is ``portal.api``.

Every error is ``{"code": "<stable_snake_case>", "detail": "<sentence>"}`` with a 4xx status;
bad input never produces a 500.
"""

from __future__ import annotations

import json
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
    """True when a decoded JSON value holds U+0000 in any string (keys included).

    Iterative, so that no nesting depth can make it raise RecursionError.
    """
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


#: No request body of the API nests deeper than a few levels; refuse far deeper ones early.
MAX_JSON_DEPTH = 32
DEPTH_DETAIL = f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels."


class JsonTooDeep(ValueError):
    """A JSON body nests deeper than MAX_JSON_DEPTH (or than Python's decoder can follow)."""


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a decoded JSON value (a scalar is 0)."""
    deepest = 0
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            todo.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def json_decode(body: bytes | str) -> Any:
    """``json.loads`` that refuses a body nested deeper than MAX_JSON_DEPTH with JsonTooDeep
    (the standard decoder raises RecursionError on very deep input: a 500 otherwise)."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise JsonTooDeep(DEPTH_DETAIL) from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise JsonTooDeep(DEPTH_DETAIL)
    return data


class PortalParser(Parser):
    """JSON bodies, refusing NUL characters anywhere (keys included) and deep nesting.

    Without it a NUL in any text field reached PostgreSQL, which answers with a DataError:
    a 500 on PostgreSQL and a stored NUL on SQLite. Django's form fields refuse NUL the same
    way (ProhibitNullCharactersValidator); this is the API's counterpart.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        data = json_decode(request.body)
        if has_nul(data):
            raise NulCharacterError(NUL_DETAIL)
        return data
