"""Test doubles for the station agent: a test CA, a fake portal and a real Mosquitto.

The fake portal implements docs/agent-protocol.md on a threaded http.server bound to port
0 and signs submitted CSRs with a real test CA when the test approves them. The broker is
the system's Mosquitto, started on free ports with a TLS listener that requires client
certificates from the test CA, plus a plain listener for the test's own clients.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localaws.pki import make_ca

MOSQUITTO = "/usr/sbin/mosquitto"
ENDPOINT = "abc123-ats.iot.test.local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class TestCA:
    """A throw-away CA that signs server, claim and device certificates."""

    __test__ = False

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key, self.cert = make_ca("Fleet Test CA", days=2)
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        self.path = directory / "ca.pem"
        self.path.write_text(self.pem)

    def sign(
        self,
        public_key: Any,
        cn: str,
        *,
        lifetime: float = 3600.0,
        not_before: dt.datetime | None = None,
        server_names: list[str] | None = None,
    ) -> str:
        now = dt.datetime.now(dt.UTC)
        start = not_before or now - dt.timedelta(seconds=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                        x509.NameAttribute(NameOID.COMMON_NAME, cn),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + dt.timedelta(seconds=lifetime))
        )
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in server_names]),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue_pair(self, cn: str, stem: str, **kw: Any) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert_path = self.dir / f"{stem}.pem"
        key_path = self.dir / f"{stem}.key"
        cert_path.write_text(self.sign(key.public_key(), cn, **kw))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


# --------------------------------------------------------------------------- fake portal
@dataclass
class FakeRequest:
    id: int
    token: str
    device: str
    csr_pem: str
    pubkey: bytes
    comment: str
    renewal: bool
    status: str = "pending"
    certificate: str | None = None
    reason: str | None = None
    fetched_issued: int = 0
    proof: dict[str, Any] | None = None


@dataclass
class FakeStation:
    name: str
    devices: list[dict[str, Any]]
    poll_interval: int = 30
    reports: list[dict[str, Any]] = field(default_factory=list)


class FakePortal:
    """The contract's station endpoints, in memory."""

    def __init__(self, ca: TestCA, *, lifetime: float = 3600.0) -> None:
        self.ca = ca
        self.lifetime = lifetime
        self.renewal_lifetime: float | None = None
        self.backdate = 0.0  # seconds notBefore lies before issuance (the portal uses 300)
        self.stall_renewals = 0.0  # seconds a renewal POST waits before it is answered
        self.stalls: list[tuple[float, float]] = []  # (start, end) of each, time.time()
        self.refuse_renewals: tuple[int, str] | None = None  # (status, code) for renewal POSTs
        self.auto_approve_renewals = True
        self.stations: dict[str, FakeStation] = {}
        self.requests: dict[int, FakeRequest] = {}
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        self.config_304 = 0
        self.enrollment_codes: dict[str, str] = {}  # code -> station token
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None):
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _station(self) -> tuple[str, FakeStation] | None:
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ").strip()
                st = portal.stations.get(token)
                if not auth.startswith("Bearer ") or st is None:
                    self._send(401, {"code": "invalid_token", "detail": "Invalid token."})
                    return None
                return token, st

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self) -> None:  # noqa: N802
                portal.calls.append(("GET", self.path))
                found = self._station()
                if found is None:
                    return
                token, st = found
                if self.path == "/api/v1/agent/config":
                    body = portal.config_for(st)
                    etag = (
                        '"'
                        + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
                        + '"'
                    )
                    if self.headers.get("If-None-Match") == etag:
                        portal.config_304 += 1
                        self._send(304, None, {"ETag": etag})
                        return
                    self._send(200, body, {"ETag": etag})
                    return
                m = re.fullmatch(r"/api/v1/onboarding-requests/(\d+)", self.path)
                if m:
                    with portal.lock:
                        req = portal.requests.get(int(m.group(1)))
                        if req is None or req.token != token:
                            self._send(404, {"code": "not_found", "detail": "No such request."})
                            return
                        if req.renewal and req.status == "pending" and portal.auto_approve_renewals:
                            portal._issue(req)
                        body = {"id": req.id, "status": req.status, "device": req.device}
                        if req.reason:
                            body["reason"] = req.reason
                        if req.status == "issued":
                            body["certificate"] = req.certificate
                            body["chain"] = [portal.ca.pem]
                            req.fetched_issued += 1
                    self._send(200, body)
                    return
                self._send(404, {"code": "not_found", "detail": "No such endpoint."})

            def do_POST(self) -> None:  # noqa: N802
                portal.calls.append(("POST", self.path))
                if self.path == "/api/v1/enrollment":
                    code = str(self._body().get("code", "")).upper().replace("-", "")
                    with portal.lock:
                        token = portal.enrollment_codes.pop(code, None)
                    if token is None:
                        self._send(409, {"code": "enrollment_code_used", "detail": "Used."})
                        return
                    self._send(200, {"token": token, "station": portal.stations[token].name})
                    return
                found = self._station()
                if found is None:
                    return
                token, st = found
                try:
                    body = self._body()
                except ValueError:
                    self._send(400, {"code": "bad_json", "detail": "Body is not JSON."})
                    return
                if self.path == "/api/v1/agent/state":
                    st.reports.append(body)
                    self._send(200, {"ok": True})
                    return
                if self.path == "/api/v1/onboarding-requests":
                    if body.get("renewal") and portal.stall_renewals:
                        start = time.time()
                        time.sleep(portal.stall_renewals)
                        portal.stalls.append((start, time.time()))
                    if body.get("renewal") and portal.refuse_renewals:
                        status, code = portal.refuse_renewals
                        self._send(status, {"code": code, "detail": f"Refused ({code})."})
                        return
                    try:
                        csr = x509.load_pem_x509_csr(body["csr"].encode())
                    except (KeyError, ValueError):
                        self._send(422, {"code": "invalid_csr", "detail": "CSR is invalid."})
                        return
                    pub = csr.public_key().public_bytes(
                        serialization.Encoding.DER,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    )
                    with portal.lock:
                        for req in portal.requests.values():
                            if (
                                req.token == token
                                and req.device == body["device"]
                                and req.pubkey == pub
                                and req.status == "pending"
                            ):
                                self._send(200, {"id": req.id, "status": req.status})
                                return
                        rid = len(portal.requests) + 1
                        portal.requests[rid] = FakeRequest(
                            id=rid,
                            token=token,
                            device=body["device"],
                            csr_pem=body["csr"],
                            pubkey=pub,
                            comment=body.get("comment", ""),
                            renewal=bool(body.get("renewal")),
                            proof=body.get("proof"),
                        )
                    self._send(201, {"id": rid, "status": "pending", "device": body["device"]})
                    return
                self._send(404, {"code": "not_found", "detail": "No such endpoint."})

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # benchmarks open many agents at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_station(self, name: str, devices: list[dict[str, Any]], **kw: Any) -> str:
        token = f"tok-{name}-{os.urandom(4).hex()}"
        self.stations[token] = FakeStation(name=name, devices=devices, **kw)
        return token

    def config_for(self, st: FakeStation) -> dict[str, Any]:
        return {"station": st.name, "poll_interval": st.poll_interval, "devices": st.devices}

    def _issue(self, req: FakeRequest) -> None:
        st = self.stations[req.token]
        csr = x509.load_pem_x509_csr(req.csr_pem.encode())
        lifetime = self.lifetime
        if req.renewal and self.renewal_lifetime is not None:
            lifetime = self.renewal_lifetime
        not_before = None
        if self.backdate:
            not_before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.backdate)
        req.certificate = self.ca.sign(
            csr.public_key(), f"{st.name}-{req.device}", lifetime=lifetime, not_before=not_before
        )
        req.status = "issued"

    def approve_all(self) -> int:
        with self.lock:
            pending = [r for r in self.requests.values() if r.status == "pending"]
            for req in pending:
                self._issue(req)
        return len(pending)

    def reject(self, rid: int, reason: str) -> None:
        with self.lock:
            self.requests[rid].status = "rejected"
            self.requests[rid].reason = reason

    def issued(self) -> list[FakeRequest]:
        return [r for r in self.requests.values() if r.status == "issued"]


# --------------------------------------------------------------------------- broker
class Broker:
    """Mosquitto on free ports: TLS (client certs from the test CA) and plain."""

    def __init__(self, directory: Path, ca: TestCA) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls_port = free_port()
        self.plain_port = free_port()
        server_cert, server_key = ca.issue_pair(
            "localhost", "server", lifetime=86400, server_names=["localhost", ENDPOINT]
        )
        os.chmod(server_key, 0o644)
        self._tls_files = (ca.path, server_cert, server_key)
        self.conf = self.dir / "mosquitto.conf"
        self._write_conf()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "mosquitto.log"
        self._started = False

    def _write_conf(self) -> None:
        ca_path, server_cert, server_key = self._tls_files
        self.conf.write_text(
            "\n".join(
                [
                    "per_listener_settings false",
                    # mosquitto started as root drops to 'mosquitto', which cannot read tmp_path
                    f"user {getpass.getuser()}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.dir}/",
                    "autosave_interval 1",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "max_inflight_messages 100",
                    "max_queued_messages 100000",
                    f"listener {self.tls_port} 127.0.0.1",
                    f"cafile {ca_path}",
                    f"certfile {server_cert}",
                    f"keyfile {server_key}",
                    "require_certificate true",
                    "use_identity_as_username true",
                    "tls_version tlsv1.2",
                    f"listener {self.plain_port} 127.0.0.1",
                    "",
                ]
            )
        )

    def _listening(self, timeout: float = 20.0) -> bool:
        """Both listeners accept connections (False once Mosquitto has exited)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        waiting = [self.tls_port, self.plain_port]
        while waiting and time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        return not waiting

    def start(self) -> None:
        if not os.access(MOSQUITTO, os.X_OK):
            pytest.skip(f"Mosquitto ({MOSQUITTO}) is not installed; `make system-deps` installs it")
        for _ in range(3):
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log
                )
            if self._listening():
                self._started = True
                return
            if self._started or self.proc.poll() is None:
                break
            # Exited before listening: another process took a port between free_port() and
            # Mosquitto's bind. A first start may move to other ports; a restart may not.
            self.tls_port, self.plain_port = free_port(), free_port()
            self._write_conf()
        self.stop()
        raise TimeoutError(f"Mosquitto did not listen on {self.tls_port}/{self.plain_port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Subscriber:
    """A plain-listener client that records messages (persistent session, QoS 1)."""

    def __init__(self, port: int, topics: list[str], client_id: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.topics = topics
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sub-{os.urandom(4).hex()}",
            clean_session=client_id is None,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("subscriber did not subscribe")

    def _on_connect(self, client: mqtt.Client, *_a: Any) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def payloads(self, topic_prefix: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(m.payload) for m in self.messages if m.topic.startswith(topic_prefix)
            ]

    def topics_seen(self) -> set[str]:
        with self.lock:
            return {m.topic for m in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class DroppingProxy:
    """TCP proxy to the broker that cuts the first N connections after the TLS handshake,
    as AWS IoT does with a new certificate while JITP registers it."""

    def __init__(self, target_port: int, drop_first: int = 1) -> None:
        self.target_port = target_port
        self.drop_first = drop_first
        self.accepted: list[float] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            drop = len(self.accepted) <= self.drop_first
            threading.Thread(target=self._serve, args=(conn, drop), daemon=True).start()

    def _serve(self, conn: socket.socket, drop: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        if drop:
            # Let the TLS handshake and CONNECT through, then hang up without CONNACK.
            conn.settimeout(5)
            upstream.settimeout(5)
            try:
                for _ in range(3):
                    data = conn.recv(65536)
                    if not data:
                        break
                    upstream.sendall(data)
                    upstream_data = upstream.recv(65536)
                    conn.sendall(upstream_data)
            except OSError:
                pass
            conn.close()
            upstream.close()
            return

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        other = threading.Thread(target=pipe, args=(conn, upstream), daemon=True)
        other.start()
        pipe(upstream, conn)
        other.join(5)
        conn.close()
        upstream.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()
