"""The agent's standard-library HTTP client against a scripted local server (HTTP and HTTPS)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fleet_agent.portal_client import PortalAuthError, PortalClient, PortalError, PortalUnreachable
from tests.agent.helpers import TestCA, free_port

TOKEN = "st_secret-token-that-must-never-show"


class Scripted(ThreadingHTTPServer):
    """Answers each path with a fixed (status, body, headers); records what came in."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any, dict[str, str]]] = {}
        self.seen: list[dict[str, Any]] = []

        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.seen.append(
                    {
                        "path": self.path,
                        "method": self.command,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                status, payload, headers = server.answers[self.path]
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if status != 304:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(srv: Scripted) -> Iterator[Scripted]:
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server() -> Iterator[Scripted]:
    with serving(Scripted()) as srv:
        yield srv


CONFIG = "/api/v1/agent/config"


def test_config_etag_round_trip(server: Scripted) -> None:
    client = PortalClient(server.url, TOKEN)
    server.answers[CONFIG] = (200, {"devices": []}, {"ETag": '"v1"'})
    assert client.get_config(None) == ({"devices": []}, '"v1"')
    server.answers[CONFIG] = (304, None, {"ETag": '"v1"'})
    assert client.get_config('"v1"') == (None, '"v1"')
    first, second = server.seen
    assert first["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert first["headers"]["User-Agent"].startswith("fleet-agent/")
    assert "If-None-Match" not in first["headers"]
    assert second["headers"]["If-None-Match"] == '"v1"'


def test_json_body_and_answer(server: Scripted) -> None:
    client = PortalClient(server.url, TOKEN)
    server.answers["/api/v1/onboarding-requests"] = (201, {"id": 7, "status": "pending"}, {})
    got = client.submit_request(device="aws", csr="PEM", comment="c", renewal=False)
    assert got == {"id": 7, "status": "pending"}
    (seen,) = server.seen
    assert seen["method"] == "POST"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["body"]) == {
        "device": "aws",
        "csr": "PEM",
        "comment": "c",
        "renewal": False,
    }


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, PortalAuthError), (403, PortalAuthError), (422, PortalError), (404, PortalError)],
)
def test_refusals_carry_code_and_detail(server: Scripted, status: int, error: type) -> None:
    server.answers[CONFIG] = (status, {"code": "some_code", "detail": "A sentence."}, {})
    with pytest.raises(error) as info:
        PortalClient(server.url, TOKEN).get_config(None)
    assert (info.value.status, info.value.code, info.value.detail) == (
        status,
        "some_code",
        "A sentence.",
    )
    assert TOKEN not in str(info.value)


def test_a_revoked_certificate_is_no_token_refusal(server: Scripted) -> None:
    path = "/api/v1/onboarding-requests"
    body = {"code": "certificate_revoked", "detail": "The certificate was revoked."}
    server.answers[path] = (403, body, {})
    client = PortalClient(server.url, TOKEN)
    with pytest.raises(PortalError) as info:
        client.submit_request(device="aws", csr="PEM", comment="", renewal=True)
    assert not isinstance(info.value, PortalAuthError)
    assert (info.value.status, info.value.code) == (403, "certificate_revoked")
    server.answers[path] = (403, {"code": "forbidden", "detail": "No."}, {})
    with pytest.raises(PortalAuthError):
        client.submit_request(device="aws", csr="PEM", comment="", renewal=True)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_overload_is_unreachable(server: Scripted, status: int) -> None:
    server.answers[CONFIG] = (status, {"detail": "busy"}, {})
    with pytest.raises(PortalUnreachable, match=f"HTTP {status}"):
        PortalClient(server.url, TOKEN).get_config(None)


def test_non_json_answer_is_unreachable(server: Scripted) -> None:
    server.answers[CONFIG] = (200, None, {})
    with pytest.raises(PortalUnreachable, match="not JSON"):
        PortalClient(server.url, TOKEN).get_config(None)


def test_no_listener_is_unreachable_without_the_token() -> None:
    client = PortalClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=5)
    with pytest.raises(PortalUnreachable) as info:
        client.get_config(None)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(client)


def test_redirect_to_another_origin_drops_the_token(server: Scripted) -> None:
    with serving(Scripted()) as other:
        other.answers[CONFIG] = (200, {"devices": []}, {})
        server.answers[CONFIG] = (302, None, {"Location": f"{other.url}{CONFIG}"})
        assert PortalClient(server.url, TOKEN).get_config(None)[0] == {"devices": []}
        assert "Authorization" not in other.seen[0]["headers"]


def test_https_verified_against_the_given_ca(ca: TestCA) -> None:
    cert, key = ca.issue_pair("localhost", "portal", server_names=["localhost"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = Scripted()
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    srv.answers[CONFIG] = (200, {"devices": []}, {})
    url = f"https://localhost:{srv.server_address[1]}"
    with serving(srv):
        client = PortalClient(url, TOKEN, ca_file=str(ca.path))
        assert client.get_config(None)[0] == {"devices": []}
        with pytest.raises(PortalUnreachable):  # the system store does not know the test CA
            PortalClient(url, TOKEN, timeout=5).get_config(None)
