"""The MQTT session of one onboarded device: connect, callbacks, heartbeats, uplink queue.

paho is driven on the device's own thread (``SocketPump``), so no locks around the client.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt

from fleet_agent.config import parse_connect_host, render_topic
from fleet_agent.device_base import DeviceBase, iso, log, safe_name, utcnow
from fleet_agent.fsutil import atomic_write, remove_quietly
from fleet_agent.mqtt_link import SocketPump, build_ssl_context, new_client

# CONNACK return codes of a refused identity: MQTT 3.1.1 (4 bad user name or password, 5 not
# authorized) and MQTT 5 (134, 135).
CONNACK_NOT_AUTHORIZED = frozenset({4, 5, 134, 135})
# OpenSSL's names of TLS alerts a server sends for a client certificate it will not accept.
_REFUSED_CERTIFICATE_ALERTS = (
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_REVOKED",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_UNSUPPORTED_CERTIFICATE",
    "ALERT_ACCESS_DENIED",
    "ALERT_UNKNOWN_CA",
)


def refused_certificate(reason: str) -> bool:
    """Whether an SSL error's reason is a TLS alert refusing our client certificate."""
    return any(alert in reason.upper() for alert in _REFUSED_CERTIFICATE_ALERTS)


class SessionMixin(DeviceBase):
    """Keep one device connected and publishing."""

    def _connect(self) -> None:
        entry = self.agent.state.device(self.cfg.name)
        thing = entry.get("thing_name") or self._csr_common_name()
        self._last_attempt = time.monotonic()
        try:
            ctx = build_ssl_context(
                ca_file=self.opts.broker_ca,
                cert_file=entry.get("fullchain_path") or entry["cert_path"],
                key_file=entry["key_path"],
                key_password=self.cfg.key_password,
                port=self.cfg.port,
            )
        except (OSError, ValueError) as exc:
            self._schedule_reconnect(f"cannot load the TLS material ({exc})")
            return
        addr = parse_connect_host(self.opts.connect_host, self.cfg.port)
        client = new_client(thing, ctx, addr)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.max_inflight_messages_set(max(self.opts.inflight_window, 1) + 5)
        self._inflight.clear()
        self._cursor = 0
        self._queue_puts += 1
        try:
            client.connect(self.cfg.endpoint, self.cfg.port, keepalive=self.opts.keepalive)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            if isinstance(exc, ssl.SSLError) and refused_certificate(str(reason)):
                self._refused(f"TLS alert {reason}")
            else:
                self._schedule_reconnect(
                    f"cannot connect to {self.cfg.endpoint}:{self.cfg.port} ({reason})"
                )
            with contextlib.suppress(Exception):
                client.disconnect()
            client.close_failed_socket()
            return
        self.client = client
        self._pump = SocketPump(client, self._waker)

    def _schedule_reconnect(self, why: str) -> None:
        delay = self._conn_backoff.next_delay()
        self._next_connect = max(time.monotonic() + delay, self._last_attempt + 1.0)
        self.last_error = why
        log.warning("device %s: %s; reconnecting in %.1f s", self.cfg.name, why, delay)

    def _refused(self, how: str) -> None:
        """The broker refused this certificate (AWS IoT: revoked, inactive or not allowed to
        connect). Trying again soon cannot help: wait the longest reconnect delay, and say so
        in the state report. Whether it was revoked the portal's configuration tells (its
        ``certificate_status``); then renewal takes the recovery path (fleet_agent.renewal)."""
        delay = self._conn_backoff.at_maximum()
        self._next_connect = max(time.monotonic() + delay, self._last_attempt + 1.0)
        self.connected = False
        self._set_status(
            "error",
            f"the broker refused the certificate ({how}): it may be revoked or inactive in "
            f"AWS IoT; retrying in {delay:.0f} s. Once the portal reports it revoked, a new "
            "key and an onboarding request that staff approve follow.",
        )

    def _connection_lost(self, why: str) -> None:
        was_ready = self._mqtt_ready
        if was_ready and time.monotonic() - self._connected_at >= self.opts.stable_after:
            self._conn_backoff.reset()
        self._close_client()
        self._schedule_reconnect(why)
        if was_ready:
            self.connected = False
            self._set_status("certificate_issued")

    def _close_client(self) -> None:
        client, self.client = self.client, None
        self._pump = None
        self._mqtt_ready = False
        self._flush_acks()
        self._inflight.clear()
        if client is not None:
            try:
                client.disconnect()  # queues DISCONNECT and writes it out directly
            except Exception:  # noqa: BLE001 - socket may already be gone
                pass
            try:
                sock = client.socket()
                if sock is not None:
                    sock.close()
            except Exception:  # noqa: BLE001
                pass

    def _drop_connection(self) -> None:
        if self.client is not None:
            self._close_client()
        if self.connected:
            self.connected = False
            self._set_status("certificate_issued")

    # paho callbacks (run on this thread, inside SocketPump.pump)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if client is not self.client:
            return
        if rc.is_failure:
            if getattr(rc, "value", None) in CONNACK_NOT_AUTHORIZED:
                self._close_client()
                self._refused(f"CONNACK {rc}")
                return
            self._connection_lost(f"the broker refused the connection ({rc})")
            return
        self._mqtt_ready = True
        self._connected_at = time.monotonic()
        self.connected = True
        self.ever_connected = True
        self.last_connected = utcnow()
        self.last_error = None
        entry = self.agent.state.device(self.cfg.name)
        thing = entry.get("thing_name") or ""
        log.info("device %s: connected to %s as %s", self.cfg.name, self.cfg.endpoint, thing)
        if self.cfg.downlink_topic:
            topic = render_topic(
                self.cfg.downlink_topic, thing=thing, station=self.station, device=self.cfg.name
            )
            client.subscribe(topic, qos=1)
        self._hb_next = 0.0  # heartbeat right away
        self._set_status("connected")
        self._retire_old_certificate(entry)

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        # loop() reports the loss through its return code; nothing else to do here.
        return

    def _on_publish(self, client: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        item_id = self._inflight.pop(mid, None)
        if item_id is not None and not (rc is not None and getattr(rc, "is_failure", False)):
            # Batched: one pump can bring dozens of PUBACKs; _flush_acks commits them at once.
            self._acked.append(item_id)

    def _flush_acks(self) -> None:
        """Remove the acknowledged items from the disk queue (one transaction).

        Runs before the next peek and before a connection is dropped, so an acknowledged
        item is never sent again by this process; a crash in between means at most one
        batch is sent twice (QoS 1 is at-least-once anyway).
        """
        if self._acked:
            acked, self._acked = self._acked, []
            self.agent.queue.ack_many(acked)

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Hand a downlink command to the local handler once, even on QoS 1 redelivery."""
        try:
            payload: Any = json.loads(msg.payload)
        except ValueError:
            payload = None
        cmd_id = None
        if isinstance(payload, dict):
            for key in ("id", "command_id", "commandId", "message_id", "messageId"):
                if payload.get(key) not in (None, ""):
                    cmd_id = str(payload[key])
                    break
        queue = self.agent.queue
        name = self.cfg.name
        if cmd_id is not None:
            key = f"id:{cmd_id}"
            if queue.was_seen(name, key):
                log.info("device %s: command %s already handled; ignored", name, cmd_id)
                return
            filename = f"cmd-{safe_name(cmd_id)}.json"
        else:
            digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).hexdigest()
            key = f"sha256:{digest}"
            if msg.dup and queue.was_seen(name, key):
                return
            filename = f"msg-{time.time_ns()}-{digest[:12]}.json"
        record = {
            "device": name,
            "topic": msg.topic,
            "received": iso(utcnow()),
            "command_id": cmd_id,
            "payload": payload if payload is not None else msg.payload.decode("utf-8", "replace"),
        }
        # Persist before the handler and before paho sends PUBACK (when on_message returns).
        atomic_write(self.inbox_dir / filename, json.dumps(record).encode(), 0o600)
        queue.mark_seen(name, key)
        self.agent.handle_command(name, record)

    def _retire_old_certificate(self, entry: dict[str, Any]) -> None:
        """After the first connection with a renewed certificate, delete the old key."""
        old = entry.get("retired") or {}
        if not old:
            return
        for path in old.values():
            remove_quietly(path)
        self.agent.state.update_device(self.cfg.name, retired=None)
        log.info("device %s: old key and certificate deleted after renewal", self.cfg.name)

    # ------------------------------------------------------------------ publishing

    def _heartbeat_tick(self) -> None:
        now = time.monotonic()
        if now < self._hb_next:
            return
        payload = json.dumps(
            {
                "thing": self.thing_name,
                "station": self.station,
                "device": self.cfg.name,
                "ts": iso(utcnow()),
                "seq": self._hb_seq,
                "queue_depth": self.agent.queue.depth(self.cfg.name),
            }
        ).encode()
        if not self.limiter.try_acquire(len(payload)):
            return
        topic = render_topic(
            self.cfg.heartbeat_topic,
            thing=self.thing_name or "",
            station=self.station,
            device=self.cfg.name,
        )
        assert self.client is not None
        self.client.publish(topic, payload, qos=0)
        self.limiter.published()
        self._hb_seq += 1
        self.heartbeats_sent += 1
        self._hb_next = now + self.cfg.heartbeat_interval

    def _drain_queue(self) -> None:
        self._flush_acks()
        window = max(self.opts.inflight_window, 1)
        if self._queue_seen == self._queue_puts and not self._inflight:
            return
        if len(self._inflight) >= window:
            return
        puts = self._queue_puts
        items = self.agent.queue.peek(self.cfg.name, self._cursor, window - len(self._inflight))
        if not items:
            if not self._inflight:
                self._queue_seen = puts
            return
        thing = self.thing_name or ""
        assert self.client is not None
        for item in items:
            if not self.limiter.try_acquire(len(item.payload)):
                return
            topic = render_topic(
                self.cfg.uplink_topic,
                thing=thing,
                station=self.station,
                device=self.cfg.name,
                point=item.point,
            )
            info = self.client.publish(topic, item.payload, qos=1)
            self.limiter.published()
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # connection trouble: loop() will notice and reconnect
            self._inflight[info.mid] = item.id
            self._cursor = item.id
