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
The decision after CONNECT is ``connect``'s; the fleet-provisioning topics are answered by
``fleet_api``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import ssl
import weakref
from collections.abc import Callable
from typing import Any

from cryptography import x509

from . import certificates as certs
from . import fleet_api
from . import iot_state as ix
from . import mqtt_codec as m
from .broker import close_connections
from .connect import ConnectAuthorizer, Decision, FrontStats, TokenBucket
from .pki import StandInPki
from .provisioning import (
    policy_allows,
)

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30.0
CONNECT_TIMEOUT = 30.0
TOKEN_LIFETIME = dt.timedelta(hours=1)


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
        self.authorizer = ConnectAuthorizer(self.bucket, self.stats, self._x509)
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
            decision = self.authorizer.authorize(leaf, sni, conn)
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
                        assert decision.backend is not None
                        answers = fleet_api.answer(
                            decision.backend, self.stats, pub.topic, pub.payload
                        )
                        for topic, payload in answers:
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
