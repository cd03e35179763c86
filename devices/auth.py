"""The station API's authentication: a station's bearer token."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from .selectors import station_for_token


class StationTokenAuth(HttpBearer):
    """A station's bearer token; ``request.auth`` becomes the Station."""

    openapi_description = "Station API token (from add_station)."

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return station_for_token(token)
