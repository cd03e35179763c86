"""HTTP client for the portal's station API (docs/agent-protocol.md).

Failures are sorted into three kinds the agent treats differently: the portal refused our
token (fatal: a person must fix it), the portal is unreachable or overloaded (retry with
backoff), and any other 4xx (the request itself is wrong; report it).
"""

from __future__ import annotations

import threading
from typing import Any

import requests

from devices.agent import __version__


class PortalError(Exception):
    """The portal answered with an error; ``code``/``detail`` come from its JSON body."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class PortalAuthError(PortalError):
    """401/403: the station token is wrong, revoked or missing."""


class PortalUnreachable(Exception):
    """No usable answer (network error, timeout, 5xx, 429): try again later."""


class PortalClient:
    """Thin, thread-safe wrapper around the station endpoints."""

    def __init__(
        self, base_url: str, token: str, *, ca_file: str | None = None, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._session = requests.Session()
        self._session.verify = ca_file or True
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "User-Agent": f"fleet-agent/{__version__}",
                "Accept": "application/json",
            }
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            with self._lock:
                resp = self._session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise PortalUnreachable(f"{type(exc).__name__}") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise PortalUnreachable(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            code, detail = "error", f"HTTP {resp.status_code}"
            try:
                body = resp.json()
                code = str(body.get("code", code))
                detail = str(body.get("detail", detail))
            except (ValueError, AttributeError):
                pass
            cls = PortalAuthError if resp.status_code in (401, 403) else PortalError
            raise cls(resp.status_code, code, detail)
        return resp

    @staticmethod
    def _json(resp: requests.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise PortalUnreachable("the portal answered with something that is not JSON") from None
        if not isinstance(body, dict):
            raise PortalUnreachable("the portal answered with an unexpected JSON shape")
        return body

    def get_config(self, etag: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """Desired configuration; ``(None, etag)`` when unchanged (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        resp = self._request("GET", "/api/v1/agent/config", headers=headers)
        if resp.status_code == 304:
            return None, etag
        return self._json(resp), resp.headers.get("ETag")

    def post_state(self, body: dict[str, Any]) -> None:
        self._request("POST", "/api/v1/agent/state", json=body)

    def submit_request(
        self, *, device: str, csr: str, comment: str, renewal: bool
    ) -> dict[str, Any]:
        resp = self._request(
            "POST",
            "/api/v1/onboarding-requests",
            json={"device": device, "csr": csr, "comment": comment, "renewal": renewal},
        )
        return self._json(resp)

    def get_request(self, request_id: int | str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/api/v1/onboarding-requests/{request_id}"))
