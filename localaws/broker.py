"""A small embedded MQTT broker (3.1.1 and 5, plain TCP) for machines without Mosquitto.

It is the stand-in's default backend: the TLS front authenticates devices the way AWS IoT
does and then pipes them here. Supported: CONNECT (client-id takeover), SUBSCRIBE with + and
# wildcards, UNSUBSCRIBE, PUBLISH QoS 0/1 (QoS 2 is accepted and delivered at most at QoS 1),
PUBACK, retained messages, will messages, PINGREQ, DISCONNECT, keep-alive timeout.
Not supported: persistent sessions (every session is treated as clean), QoS 2 delivery,
MQTT 5 properties beyond skipping them, authentication (bind it to 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref

from paho.mqtt.client import topic_matches_sub

from . import mqtt_codec as m

log = logging.getLogger(__name__)


async def close_connections(
    server: asyncio.Server | None,
    tasks: set[asyncio.Task[None]],
    transports: weakref.WeakSet[asyncio.WriteTransport],
) -> None:
    """End every connection of a listener that ``stop()`` already closed.

    Shared by the broker and the MQTT front: cancel the connection tasks, abort transports
    still in a TLS shutdown (they would outlive the event loop otherwise), then wait briefly
    for the server to finish closing.
    """
    for t in list(tasks):
        t.cancel()
    if tasks:
        await asyncio.wait(list(tasks), timeout=2)
    for transport in list(transports):
        transport.abort()
    await asyncio.sleep(0.05)
    if server:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


class _Session:
    def __init__(self, writer: asyncio.StreamWriter, connect: m.Connect) -> None:
        self.writer = writer
        self.connect = connect
        self.level = connect.protocol_level
        self.subs: dict[str, int] = {}
        self.next_pid = 0
        self.closed = False

    def pid(self) -> int:
        self.next_pid = self.next_pid % 65535 + 1
        return self.next_pid

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)


class Broker:
    """An asyncio MQTT broker; use `start()`/`stop()` inside a loop or `BrokerThread`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: weakref.WeakSet[asyncio.WriteTransport] = weakref.WeakSet()

    async def start(self) -> None:
        """Bind and listen; `self.port` holds the real port afterwards."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("embedded broker listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        """Close the listener and every session."""
        if self._server:
            self._server.close()
        for s in list(self._sessions.values()):
            s.closed = True
            s.writer.close()
        await close_connections(self._server, self._tasks, self._transports)

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if payload:
                self._retained[topic] = (payload, qos)
            else:
                self._retained.pop(topic, None)
        for sess in list(self._sessions.values()):
            granted = -1
            for filt, sq in sess.subs.items():
                if topic_matches_sub(filt, topic):
                    granted = max(granted, min(qos, sq))
            if granted < 0:
                continue
            out_q = min(granted, 1)
            sess.send(
                m.publish(
                    topic,
                    payload,
                    level=sess.level,
                    qos=out_q,
                    packet_id=sess.pid() if out_q else None,
                )
            )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._tasks.add(task)
        self._transports.add(writer.transport)
        sess: _Session | None = None
        graceful = False
        try:
            pkt = await asyncio.wait_for(m.read_packet(reader), 10)
            if pkt is None or pkt.ptype != m.CONNECT:
                return
            conn = m.parse_connect(pkt.body)
            if conn.protocol_level not in (3, 4, 5):
                writer.write(m.connack(4, 1))
                return
            if not conn.client_id:
                conn.client_id = f"auto-{id(writer):x}"
            old = self._sessions.get(conn.client_id)
            if old:
                old.closed = True
                old.writer.close()
            sess = _Session(writer, conn)
            self._sessions[conn.client_id] = sess
            writer.write(m.connack(conn.protocol_level, 0))
            timeout = conn.keepalive * 1.5 if conn.keepalive else None
            while True:
                pkt = await asyncio.wait_for(m.read_packet(reader), timeout)
                if pkt is None:
                    break
                if pkt.ptype == m.DISCONNECT:
                    graceful = True
                    break
                self._packet(sess, pkt)
                await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            ConnectionError,
            m.MqttProtocolError,
            OSError,
        ) as exc:
            log.debug("broker session ended: %s", exc)
        except asyncio.CancelledError:
            graceful = True
        finally:
            if sess is not None:
                if self._sessions.get(sess.connect.client_id) is sess:
                    del self._sessions[sess.connect.client_id]
                was_taken_over = sess.closed
                sess.closed = True
                if sess.connect.will and not graceful and not was_taken_over:
                    wt, wp, wq, wr = sess.connect.will
                    self._route(wt, wp, wq, wr)
            writer.close()
            if task:
                self._tasks.discard(task)

    def _packet(self, sess: _Session, pkt: m.Packet) -> None:
        level = sess.level
        if pkt.ptype == m.PUBLISH:
            pub = m.parse_publish(pkt, level)
            if "+" in pub.topic or "#" in pub.topic or not pub.topic:
                raise m.MqttProtocolError("invalid publish topic")
            if pub.qos == 1 and pub.packet_id is not None:
                sess.send(m.ack(m.PUBACK, pub.packet_id, level))
            elif pub.qos == 2 and pub.packet_id is not None:
                sess.send(m.ack(m.PUBREC, pub.packet_id, level))
            self._route(pub.topic, pub.payload, pub.qos, pub.retain)
        elif pkt.ptype == m.PUBREL:
            pid = int.from_bytes(pkt.body[:2], "big")
            sess.send(m.ack(m.PUBCOMP, pid, level))
        elif pkt.ptype == m.SUBSCRIBE:
            sub = m.parse_subscribe(pkt, level)
            codes = []
            new = []
            for filt, q in sub.topics:
                if m.valid_filter(filt):
                    granted = min(q, 1)
                    sess.subs[filt] = granted
                    codes.append(granted)
                    new.append((filt, granted))
                else:
                    codes.append(0x80 if level != 5 else 0x8F)
            sess.send(m.ack(m.SUBACK, sub.packet_id, level, codes))
            for filt, granted in new:
                for topic, (payload, rq) in list(self._retained.items()):
                    if topic_matches_sub(filt, topic):
                        q = min(rq, granted)
                        sess.send(
                            m.publish(
                                topic,
                                payload,
                                level=level,
                                qos=q,
                                retain=True,
                                packet_id=sess.pid() if q else None,
                            )
                        )
        elif pkt.ptype == m.UNSUBSCRIBE:
            pid, topics = m.parse_unsubscribe(pkt, level)
            for t in topics:
                sess.subs.pop(t, None)
            sess.send(m.ack(m.UNSUBACK, pid, level, [0] * len(topics)))
        elif pkt.ptype == m.PINGREQ:
            sess.send(m.build(m.PINGRESP, 0, b""))
        elif pkt.ptype in (m.PUBACK, m.PUBREC, m.PUBCOMP):
            if pkt.ptype == m.PUBREC:
                pid = int.from_bytes(pkt.body[:2], "big")
                sess.send(m.ack(m.PUBREL, pid, level))
        else:
            raise m.MqttProtocolError(f"unexpected packet type {pkt.ptype}")


class BrokerThread:
    """Run a `Broker` on its own event loop thread (for tests and `--broker embedded`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.broker = Broker(host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.broker.port

    def start(self) -> BrokerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.broker.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
