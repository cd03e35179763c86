"""HTTP client for the portal's station API (docs/agent-protocol.md).

Failures are sorted into three kinds the agent treats differently: the portal refused our
token (fatal: a person must fix it), the portal is unreachable or overloaded (retry with
backoff), and any other 4xx (the request itself is wrong; report it), which includes a 403
about a device's certificate (``certificate_revoked``): that device recovers, the agent
goes on.

Standard library only (``urllib.request``), so a station needs no HTTP package: TLS is
verified against the system store or ``ca_file``, proxies come from the usual environment
variables, and the station token travels only in the ``Authorization`` header, never in an
exception message or a log line.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

from fleet_agent import __version__


class PortalError(Exception):
    """The portal answered with an error; ``code``/``detail`` come from its JSON body."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class PortalAuthError(PortalError):
    """401/403: the station token is wrong, revoked or missing."""


#: 403 refusals that concern one device's certificate, not the station token: the device
#: takes its recovery path and the agent goes on (docs/agent-protocol.md).
DEVICE_REFUSALS = frozenset({"certificate_revoked"})


class PortalUnreachable(Exception):
    """No usable answer (network error, timeout, 5xx, 429): try again later."""


@dataclass
class Response:
    """One answer of the portal: status, headers and the whole body."""

    status_code: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _KeepTokenHome(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never send the token to another origin (as requests does)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old, target = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(new.full_url)
            if (old.scheme, old.netloc) != (target.scheme, target.netloc):
                new.remove_header("Authorization")
        return new


def portal_url_problem(url: str) -> str | None:
    """A sentence when ``url`` is no portal URL the agent will use, else None.

    Plain ``http://`` would show the station token and the device key passwords to anyone
    on the path, so it is accepted only for this machine (127.0.0.0/8, ::1, localhost).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme != "http" or not parts.hostname:
        return f"the portal URL {url!r} is not an https:// URL."
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"the portal URL {url} uses plain http://, which would send the station token "
        "unencrypted; use https:// (http:// is allowed only for 127.0.0.1, ::1 or localhost)."
    )


class PortalClient:
    """Thin, thread-safe wrapper around the station endpoints."""

    def __init__(
        self, base_url: str, token: str, *, ca_file: str | None = None, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        context = ssl.create_default_context(cafile=ca_file)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _KeepTokenHome()
        )
        self._headers = {
            "User-Agent": f"fleet-agent/{__version__}",
            "Accept": "application/json",
        }
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PortalClient({self.base_url!r})"

    def close(self) -> None:
        """Nothing to release: every request uses its own connection."""

    def _send(self, req: urllib.request.Request) -> Response:
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                return Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    body = exc.read()
                except (OSError, http.client.HTTPException):
                    body = b""
            return Response(exc.code, exc.headers, body)
        except urllib.error.URLError as exc:
            reason = exc.reason
            kind = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
            raise PortalUnreachable(kind) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise PortalUnreachable(type(exc).__name__) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Response:
        token_header = {"Authorization": f"Bearer {self._token}"} if auth else {}
        all_headers = {**self._headers, **token_header, **(headers or {})}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        req = urllib.request.Request(
            f"{self.base_url}{path}", data=data, headers=all_headers, method=method
        )
        with self._lock:
            resp = self._send(req)
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
            token_refused = resp.status_code == 401 or (
                resp.status_code == 403 and code not in DEVICE_REFUSALS
            )
            cls = PortalAuthError if token_refused else PortalError
            raise cls(resp.status_code, code, detail)
        return resp

    @staticmethod
    def _json(resp: Response) -> dict[str, Any]:
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
        self._request("POST", "/api/v1/agent/state", json_body=body)

    def submit_request(
        self,
        *,
        device: str,
        csr: str,
        comment: str,
        renewal: bool,
        proof: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "device": device,
            "csr": csr,
            "comment": comment,
            "renewal": renewal,
        }
        if proof is not None:
            body["proof"] = proof
        resp = self._request("POST", "/api/v1/onboarding-requests", json_body=body)
        return self._json(resp)

    def get_request(self, request_id: int | str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/api/v1/onboarding-requests/{request_id}"))

    def enroll(self, code: str) -> dict[str, Any]:
        """Exchange a one-time enrolment code (no token needed) for ``{"token", "station"}``."""
        resp = self._request("POST", "/api/v1/enrollment", json_body={"code": code}, auth=False)
        body = self._json(resp)
        if not isinstance(body.get("token"), str) or not body["token"]:
            raise PortalUnreachable("the portal's enrolment answer holds no token")
        return body
