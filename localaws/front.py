"""The MQTT-over-TLS front: AWS IoT's device gateway, in front of a plain MQTT broker.

Per connection: TLS with a required client certificate (trusted: the CAs registered through
the control plane, the stand-in Amazon CA, and certificates registered without a CA), then
the CONNECT packet, then one of
* a certificate registered ACTIVE -> iot:Connect is checked against its policies and the
  session is piped to the backend broker (CONNECT replayed), packet by packet;
* an unknown certificate chained to an ACTIVE CA with auto-registration on -> just-in-time
  provisioning (registered PENDING_ACTIVATION, template applied) and the connection is
  dropped without CONNACK, as AWS does;
* anything else -> refused (TLS failure, or CONNACK "not authorized" then close).
Inside a session, PUBLISH to `$aws/certificates/...` and `$aws/provisioning-templates/...`
is answered by the stand-in itself (fleet provisioning by claim) and never reaches the
broker; other PUBLISH/SUBSCRIBE packets are checked against the policies (iot:Publish,
iot:Subscribe) like AWS does.

It passes 400 lines because it is one protocol front (TLS, MQTT sessions, JITP, policies,
the fleet-provisioning topics) whose pieces share the session state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from moto.core.exceptions import JsonRESTError
from moto.iot.models import FakeCertificate, IoTBackend

from . import certificates as certs
from . import iot_extensions as ix
from . import mqtt_codec as m
from .broker import close_connections
from .pki import StandInPki
from .provisioning import (
    TemplateError,
    apply_template,
    certificate_parameters,
    policy_allows,
    principal_policy_documents,
)

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30.0
CONNECT_TIMEOUT = 30.0
TOKEN_LIFETIME = dt.timedelta(hours=1)


class TokenBucket:
    """AWS throttles JITP registrations (10/s by default); rate 0 disables the limit."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = max(rate, 1.0)
        self.stamp = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        if self.rate <= 0:
            return True
        now = self.clock()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Decision:
    """What to do with a connection after CONNECT."""

    action: str  # "pass", "drop" (JITP done), "refuse"
    reason: str
    backend: IoTBackend | None = None
    certificate: FakeCertificate | None = None
    policy_docs: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class FrontStats:
    """Counters, for tests and the benchmark."""

    connections: int = 0
    jitp_registrations: int = 0
    jitp_failures: int = 0
    refused: int = 0
    passed: int = 0
    throttled: int = 0
    fleet_certificates: int = 0
    fleet_provisioned: int = 0
    closed_by_status: int = 0


class MqttFront:
    """The device gateway; runs on an asyncio loop (see `LocalAws`)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        pki: StandInPki,
        broker: tuple[str, int],
        jitp_rate: float = 10.0,
        enforce_topics: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.pki = pki
        self.broker = broker
        self.bucket = TokenBucket(jitp_rate)
        self.enforce_topics = enforce_topics
        self.stats = FrontStats()
        self._server: asyncio.Server | None = None
        self._ctx_key: Any = None
        self._ctx: ssl.SSLContext | None = None
        self._parsed: dict[str, x509.Certificate] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: weakref.WeakSet[asyncio.WriteTransport] = weakref.WeakSet()
        # Live sessions by certificate id (the SHA-256 of the DER, ix.fingerprint).
        self._sessions: dict[str, set[asyncio.StreamWriter]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unlisten: Callable[[], None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen; `self.port` is the real port afterwards."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._unlisten = certs.on_certificate_deactivated(self._certificate_deactivated)

    async def stop(self) -> None:
        """Stop listening and end every session."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._server:
            self._server.close()
        await close_connections(self._server, self._tasks, self._transports)

    # ---------------------------------------------------------------- sessions

    def sessions_of(self, certificate_id: str) -> int:
        """How many live sessions use the certificate (for tests)."""
        return len(self._sessions.get(certificate_id, ()))

    def _certificate_deactivated(self, certificate_id: str) -> None:
        """Called from the control plane's thread when a certificate leaves ACTIVE."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._close_sessions, certificate_id)

    def _close_sessions(self, certificate_id: str) -> None:
        writers = self._sessions.pop(certificate_id, set())
        for writer in writers:
            writer.transport.abort()
        if writers:
            self.stats.closed_by_status += len(writers)
            log.info(
                "certificate %s left ACTIVE: %d session(s) closed",
                certificate_id[:12],
                len(writers),
            )

    # ---------------------------------------------------------------- TLS trust

    def _x509(self, pem: str) -> x509.Certificate:
        cert = self._parsed.get(pem)
        if cert is None:
            cert = x509.load_pem_x509_certificate(pem.encode())
            if len(self._parsed) > 100_000:
                self._parsed.clear()
            self._parsed[pem] = cert
        return cert

    def _trust_context(self) -> ssl.SSLContext:
        """An SSL context trusting what the control plane registered, rebuilt on change."""
        backends = ix.iter_backends()
        key = tuple(
            (acct, region, tuple(b.ca_certificates), len(b.certificates))
            for acct, region, b in backends
        )
        if self._ctx is not None and key == self._ctx_key:
            return self._ctx
        anchors = [self.pki.amazon_ca_pem]
        issuers = {self.pki.amazon_ca_cert.subject}
        for _, _, b in backends:
            for ca in b.ca_certificates.values():
                anchors.append(ca.certificate_pem)
                issuers.add(self._x509(ca.certificate_pem).subject)
        for _, _, b in backends:
            for cert in b.certificates.values():
                with contextlib.suppress(ValueError):
                    if self._x509(cert.certificate_pem).issuer not in issuers:
                        anchors.append(cert.certificate_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.pki.server_cert_path, self.pki.server_key_path)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.load_verify_locations(cadata="\n".join(anchors))

        def remember_sni(obj: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
            obj.localaws_sni = name

        ctx.sni_callback = remember_sni
        self._ctx, self._ctx_key = ctx, key
        return ctx

    # ---------------------------------------------------------------- connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._tasks.add(task)
        self.stats.connections += 1
        self._transports.add(writer.transport)
        peer = writer.get_extra_info("peername")
        try:
            await self._session(reader, writer)
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            ConnectionError,
            ssl.SSLError,
            m.MqttProtocolError,
            OSError,
        ) as exc:
            log.debug("connection from %s ended: %r", peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("unexpected error on connection from %s", peer)
        finally:
            writer.close()
            if task:
                self._tasks.discard(task)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with ix.BACKEND_LOCK:
            ctx = self._trust_context()
        try:
            await writer.start_tls(ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            self.stats.refused += 1
            log.info("TLS handshake refused: %s", exc)
            return
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
        if not der:
            self.stats.refused += 1
            log.info("refused: no client certificate")
            return
        sni = getattr(sslobj, "localaws_sni", None)
        pkt = await asyncio.wait_for(m.read_packet(reader), CONNECT_TIMEOUT)
        if pkt is None or pkt.ptype != m.CONNECT:
            return
        conn = m.parse_connect(pkt.body)
        leaf = x509.load_der_x509_certificate(der)
        with ix.BACKEND_LOCK:
            decision = self._authorize(leaf, sni, conn)
        log.info(
            "client %r (sni=%s): %s - %s", conn.client_id, sni, decision.action, decision.reason
        )
        for topic, payload in decision.events:
            await self._publish_event(topic, payload)
        if decision.action == "drop":
            return
        if decision.action == "refuse":
            self.stats.refused += 1
            if decision.certificate is not None:
                writer.write(m.connack(conn.protocol_level, m.refuse_code(conn.protocol_level)))
                with contextlib.suppress(Exception):
                    await writer.drain()
            return
        self.stats.passed += 1
        await self._pipe(reader, writer, pkt, conn, decision)

    # ---------------------------------------------------------------- authorization

    def _candidates(self, sni: str | None) -> tuple[list[tuple[str, str, IoTBackend]], bool]:
        """Backends a connection may belong to, and whether SNI named an endpoint."""
        backends = ix.iter_backends()
        if sni and sni.endswith(".amazonaws.com"):
            named = []
            for acct, region, b in backends:
                ats = ix.data_endpoint(acct, region)
                if sni in (ats, ats.replace("-ats.", ".", 1)):
                    named.append((acct, region, b))
            return named, True
        return backends, False

    def _authorize(self, leaf: x509.Certificate, sni: str | None, conn: m.Connect) -> Decision:
        fp = ix.fingerprint(leaf)
        backends, sni_named = self._candidates(sni)
        if sni_named and not backends:
            return Decision("refuse", f"SNI {sni} is not a data endpoint of this stand-in")
        now = dt.datetime.now(dt.UTC)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return Decision("refuse", "certificate expired or not yet valid")
        for acct, region, b in backends:
            cert = b.certificates.get(fp)
            if cert is not None:
                return self._authorize_registered(acct, region, b, cert, conn)
        for _acct, _region, b in backends:
            for ca in list(b.ca_certificates.values()):
                ca_x = self._x509(ca.certificate_pem)
                if not ix.signed_by(leaf, ca_x):
                    continue
                if getattr(ca, "certificate_mode", "DEFAULT") == "SNI_ONLY" and not sni_named:
                    continue
                return self._jitp(b, ca, leaf)
        return Decision("refuse", "certificate is not registered and no registered CA signed it")

    def _authorize_registered(
        self, acct: str, region: str, b: IoTBackend, cert: FakeCertificate, conn: m.Connect
    ) -> Decision:
        if cert.status != "ACTIVE":
            return Decision("refuse", f"certificate is {cert.status}", b, cert)
        ca_id = getattr(cert, "ca_certificate_id", None)
        if ca_id and ca_id in b.ca_certificates and b.ca_certificates[ca_id].status == "REVOKED":
            return Decision("refuse", "the certificate's CA is REVOKED", b, cert)
        docs = principal_policy_documents(b, cert.arn)
        variables = {"iot:ClientId": conn.client_id}
        if (cert.arn, conn.client_id) in b.principal_things:
            variables["iot:Connection.Thing.ThingName"] = conn.client_id
            variables["iot:Connection.Thing.IsAttached"] = "true"
        resource = f"arn:aws:iot:{region}:{acct}:client/{conn.client_id}"
        if not policy_allows(docs, "iot:Connect", resource, variables):
            return Decision(
                "refuse", f"iot:Connect not allowed for client id {conn.client_id!r}", b, cert
            )
        return Decision("pass", "authorized", b, cert, docs, variables)

    def _jitp(self, b: IoTBackend, ca: Any, leaf: x509.Certificate) -> Decision:
        if ca.status != "ACTIVE":
            return Decision("refuse", f"CA {ca.certificate_id[:12]} is {ca.status}")
        if getattr(ca, "auto_registration_status", "DISABLE") != "ENABLE":
            return Decision("refuse", "CA has auto-registration disabled")
        if not self.bucket.take():
            self.stats.throttled += 1
            return Decision("refuse", "JITP throttled (--jitp-rate)")
        pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
        cert = b.register_certificate(
            certificate_pem=pem,
            ca_certificate_pem=ca.certificate_pem,
            set_as_active=False,
            status="PENDING_ACTIVATION",
        )
        self.stats.jitp_registrations += 1
        config = ca.registration_config or {}
        body = config.get("templateBody")
        if config.get("templateName"):
            tpl = ix.ext(b).templates.get(config["templateName"])
            if tpl is None or not tpl.enabled:
                self.stats.jitp_failures += 1
                return Decision(
                    "drop", f"JITP template {config['templateName']} missing or disabled"
                )
            body = tpl.body
        if not body:
            event = {
                "certificateId": cert.certificate_id,
                "caCertificateId": ca.certificate_id,
                "timestamp": int(time.time()),
                "certificateStatus": "PENDING_ACTIVATION",
                "awsAccountId": b.account_id,
                "certificateRegistrationTimestamp": str(int(time.time() * 1000)),
            }
            return Decision(
                "drop",
                "registered PENDING_ACTIVATION (no template: JITR event published)",
                events=[
                    (
                        f"$aws/events/certificates/registered/{ca.certificate_id}",
                        json.dumps(event).encode(),
                    )
                ],
            )
        try:
            result = apply_template(
                b, body, certificate_parameters(leaf, cert.certificate_id), cert
            )
        except (TemplateError, JsonRESTError) as exc:
            self.stats.jitp_failures += 1
            msg = exc.message if isinstance(exc, JsonRESTError) else str(exc)
            return Decision("drop", f"JITP failed, certificate stays PENDING_ACTIVATION: {msg}")
        return Decision("drop", f"JITP provisioned thing {result['thingName']}")

    async def _publish_event(self, topic: str, payload: bytes) -> None:
        """Publish an AWS event (e.g. JITR's registered event) on the backend broker."""
        try:
            reader, writer = await asyncio.open_connection(*self.broker)
        except OSError as exc:
            log.warning("cannot publish event %s: %s", topic, exc)
            return
        self._transports.add(writer.transport)
        try:
            body = m.enc_str("MQTT") + bytes([4, 0x02, 0, 10])
            body += m.enc_str(f"localaws-events-{secrets.token_hex(4)}")
            writer.write(m.build(m.CONNECT, 0, body))
            ack = await asyncio.wait_for(m.read_packet(reader), 5)
            if ack is None or ack.ptype != m.CONNACK or ack.body[1:2] != b"\x00":
                log.warning("backend broker refused the event publisher")
                return
            writer.write(m.publish(topic, payload, qos=0))
            writer.write(m.build(m.DISCONNECT, 0, b""))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, m.MqttProtocolError) as exc:
            log.warning("cannot publish event %s: %s", topic, exc)
        finally:
            writer.close()

    # ---------------------------------------------------------------- session pipe

    async def _pipe(
        self,
        creader: asyncio.StreamReader,
        cwriter: asyncio.StreamWriter,
        connect_pkt: m.Packet,
        conn: m.Connect,
        decision: Decision,
    ) -> None:
        try:
            breader, bwriter = await asyncio.open_connection(*self.broker)
        except OSError as exc:
            log.warning("backend broker %s:%s unreachable: %s", *self.broker, exc)
            cwriter.write(m.connack(conn.protocol_level, 0x88 if conn.protocol_level == 5 else 3))
            return
        self._transports.add(bwriter.transport)
        cert_id = decision.certificate.certificate_id if decision.certificate else ""
        if cert_id:
            with ix.BACKEND_LOCK:
                still_active = decision.certificate.status == "ACTIVE"  # type: ignore[union-attr]
                if still_active:
                    self._sessions.setdefault(cert_id, set()).add(cwriter)
            if not still_active:  # deactivated while this session was being set up
                bwriter.close()
                return
        bwriter.write(connect_pkt.raw)
        level = conn.protocol_level

        async def up() -> None:
            while True:
                pkt = await m.read_packet(creader)
                if pkt is None:
                    return
                if pkt.ptype == m.PUBLISH:
                    pub = m.parse_publish(pkt, level)
                    if pub.topic.startswith(("$aws/certificates/", "$aws/provisioning-templates/")):
                        if not self._topic_allowed(decision, "iot:Publish", "topic", pub.topic):
                            log.info("fleet API publish to %s not allowed: disconnect", pub.topic)
                            return
                        if pub.qos and pub.packet_id is not None:
                            cwriter.write(m.ack(m.PUBACK, pub.packet_id, level))
                        for topic, payload in self._fleet_api(decision, pub.topic, pub.payload):
                            cwriter.write(m.publish(topic, payload, level=level))
                        await cwriter.drain()
                        continue
                    if not self._topic_allowed(decision, "iot:Publish", "topic", pub.topic):
                        log.info("publish to %s not allowed: disconnect", pub.topic)
                        return
                elif pkt.ptype == m.SUBSCRIBE:
                    sub = m.parse_subscribe(pkt, level)
                    if not all(
                        self._topic_allowed(decision, "iot:Subscribe", "topicfilter", t)
                        for t, _ in sub.topics
                    ):
                        cwriter.write(
                            m.ack(m.SUBACK, sub.packet_id, level, [0x80] * len(sub.topics))
                        )
                        await cwriter.drain()
                        continue
                bwriter.write(pkt.raw)
                await bwriter.drain()
                if pkt.ptype == m.DISCONNECT:
                    return

        async def down() -> None:
            while True:
                pkt = await m.read_packet(breader)
                if pkt is None:
                    return
                cwriter.write(pkt.raw)
                await cwriter.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                err = t.exception()
                if err:
                    log.debug("session %s ended: %r", conn.client_id, err)
        finally:
            for t in tasks:
                t.cancel()
            bwriter.close()
            live = self._sessions.get(cert_id)
            if live is not None:
                live.discard(cwriter)
                if not live:
                    self._sessions.pop(cert_id, None)

    def _topic_allowed(self, decision: Decision, action: str, kind: str, topic: str) -> bool:
        if not self.enforce_topics or decision.backend is None:
            return True
        b = decision.backend
        resource = f"arn:aws:iot:{b.region_name}:{b.account_id}:{kind}/{topic}"
        return policy_allows(decision.policy_docs, action, resource, decision.variables)

    # ---------------------------------------------------------------- fleet provisioning

    def _fleet_api(self, decision: Decision, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Answer one fleet-provisioning MQTT API request: [(topic, payload)]."""
        b = decision.backend
        assert b is not None
        if not topic.endswith("/json"):
            return [
                (
                    topic + "/rejected",
                    _rejection(400, "InvalidPayload", "Only the JSON API is emulated."),
                )
            ]
        try:
            request = json.loads(payload or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            return [
                (
                    topic + "/rejected",
                    _rejection(400, "InvalidPayload", "Payload is not a JSON object."),
                )
            ]
        with ix.BACKEND_LOCK:
            try:
                if topic == "$aws/certificates/create/json":
                    body = self._create_keys(b)
                elif topic == "$aws/certificates/create-from-csr/json":
                    body = self._create_from_csr(b, request)
                elif topic.startswith("$aws/provisioning-templates/") and topic.endswith(
                    "/provision/json"
                ):
                    name = topic[len("$aws/provisioning-templates/") : -len("/provision/json")]
                    body = self._register_thing(b, name, request)
                else:
                    raise _FleetError(404, "NotFound", f"Unknown API topic {topic}.")
            except _FleetError as exc:
                return [(topic + "/rejected", _rejection(exc.status, exc.code, str(exc)))]
            except JsonRESTError as exc:
                return [(topic + "/rejected", _rejection(400, exc.error_type, exc.message))]
        if "clientToken" in request:
            body["clientToken"] = request["clientToken"]
        return [(topic + "/accepted", json.dumps(body).encode())]

    def _token(self, b: IoTBackend, cert: FakeCertificate) -> str:
        token = secrets.token_urlsafe(48)
        tokens = ix.ext(b).ownership_tokens
        now = dt.datetime.now(dt.UTC)
        for k in [k for k, v in tokens.items() if v.expires < now]:
            del tokens[k]
        tokens[token] = ix.OwnershipToken(cert.certificate_id, now + TOKEN_LIFETIME)
        return token

    def _create_keys(self, b: IoTBackend) -> dict[str, Any]:
        cert, keys = b.create_keys_and_certificate(set_as_active=False)
        self.stats.fleet_certificates += 1
        return {
            "certificateId": cert.certificate_id,
            "certificatePem": cert.certificate_pem,
            "privateKey": keys["PrivateKey"],
            "certificateOwnershipToken": self._token(b, cert),
        }

    def _create_from_csr(self, b: IoTBackend, request: dict[str, Any]) -> dict[str, Any]:
        csr = request.get("certificateSigningRequest")
        if not isinstance(csr, str) or not csr.strip():
            raise _FleetError(400, "InvalidPayload", "certificateSigningRequest is required.")
        cert = b.create_certificate_from_csr(csr, set_as_active=False)
        self.stats.fleet_certificates += 1
        return {
            "certificateId": cert.certificate_id,
            "certificatePem": cert.certificate_pem,
            "certificateOwnershipToken": self._token(b, cert),
        }

    def _register_thing(self, b: IoTBackend, name: str, request: dict[str, Any]) -> dict[str, Any]:
        tpl = ix.ext(b).templates.get(name)
        if tpl is None or tpl.type != "FLEET_PROVISIONING":
            raise _FleetError(404, "ResourceNotFound", f"No fleet provisioning template {name}.")
        if not tpl.enabled:
            raise _FleetError(400, "InvalidRequest", f"The template {name} is disabled.")
        token = request.get("certificateOwnershipToken")
        owned = ix.ext(b).ownership_tokens.get(token) if isinstance(token, str) else None
        if owned is None or owned.expires < dt.datetime.now(dt.UTC):
            raise _FleetError(
                400,
                "InvalidCertificateOwnershipToken",
                "The certificate ownership token is invalid.",
            )
        cert = b.certificates.get(owned.certificate_id)
        if cert is None:
            raise _FleetError(404, "ResourceNotFound", "The certificate no longer exists.")
        params = request.get("parameters") or {}
        if not isinstance(params, dict):
            raise _FleetError(400, "InvalidParameters", "parameters must be an object.")
        supplied = {str(k): v for k, v in params.items()}
        leaf = x509.load_pem_x509_certificate(cert.certificate_pem.encode())
        supplied.update(certificate_parameters(leaf, cert.certificate_id))
        for k, v in params.items():
            supplied[str(k)] = v
        try:
            result = apply_template(b, tpl.body, supplied, cert)
        except TemplateError as exc:
            raise _FleetError(400, "InvalidParameters", str(exc)) from exc
        ix.ext(b).ownership_tokens.pop(str(token), None)
        self.stats.fleet_provisioned += 1
        out: dict[str, Any] = {"deviceConfiguration": result["deviceConfiguration"] or {}}
        if result["thingName"]:
            out["thingName"] = result["thingName"]
        return out


class _FleetError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _rejection(status: int, code: str, message: str) -> bytes:
    return json.dumps({"statusCode": status, "errorCode": code, "errorMessage": message}).encode()
