"""Runtime of one MQTT device on the station: onboard, connect, publish, renew.

One thread per device runs a small event loop: before it has a certificate it onboards
(portal CSR or claim); afterwards it drives the paho client itself (``client.loop``) and,
between network events, publishes heartbeats, drains the store-and-forward queue under the
rate limit and checks whether the certificate is due for renewal. Keeping everything on
one thread per device means no locks around paho and a cheap footprint per device.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import ssl
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from fleet_agent.claim import ClaimError, provision_by_claim
from fleet_agent.config import DeviceConfig, parse_connect_host, render_topic
from fleet_agent.fsutil import atomic_write, remove_quietly
from fleet_agent.keys import (
    CertInfo,
    KeyFileError,
    PrivateKey,
    build_csr,
    cert_info,
    generate_private_key,
    load_private_key,
    public_key_der,
    save_private_key,
)
from fleet_agent.mqtt_link import Backoff, SocketPump, Waker, build_ssl_context, new_client
from fleet_agent.portal_client import PortalAuthError, PortalError, PortalUnreachable
from fleet_agent.ratelimit import PublishLimiter

if TYPE_CHECKING:
    from fleet_agent.agent import Agent

log = logging.getLogger("fleet_agent")

STATUSES = (
    "installed",
    "onboarding",
    "awaiting_approval",
    "certificate_issued",
    "connected",
    "error",
)


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


class DeviceError(Exception):
    """This device cannot proceed for now; the message is one sentence for the operator."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:120] or "_"


class DeviceWorker(threading.Thread):
    """Owns one device's key material, onboarding, MQTT connection and renewal."""

    def __init__(self, agent: Agent, config: DeviceConfig, *, onboard_only: bool = False) -> None:
        super().__init__(name=f"fleet-agent-{agent.label}-{config.name}", daemon=True)
        self.agent = agent
        self.opts = agent.options
        self.cfg = config
        self.onboard_only = onboard_only
        self._new_cfg: DeviceConfig | None = None
        self._waker = Waker()
        self._stop_event = threading.Event()
        self.dev_dir = self.opts.state_dir / "devices" / _safe_name(config.name)
        self.inbox_dir = self.opts.state_dir / "inbox" / _safe_name(config.name)

        # Reported facts.
        self.status = "installed"
        self.last_error: str | None = None
        self.connected = False
        self.last_connected: dt.datetime | None = None
        self.ever_connected = False
        self.heartbeats_sent = 0
        self.onboarding_done = False

        # Connection.
        self.client: mqtt.Client | None = None
        self._pump: SocketPump | None = None
        self._mqtt_ready = False
        self._connected_at = 0.0
        self._last_attempt = -1e9
        self._next_connect = 0.0
        self._reconnect_requested = False
        self._conn_backoff = Backoff(minimum=1.0, maximum=self.opts.reconnect_max)
        self._cert: CertInfo | None = None
        self._hb_next = 0.0
        self._hb_seq = 0

        # Store-and-forward.
        self.limiter = PublishLimiter(
            enabled=self.opts.rate_limit,
            messages_per_s=self.opts.max_publish_rate,
            bytes_per_s=self.opts.max_bytes_rate,
        )
        self._inflight: dict[int, int] = {}
        self._acked: list[int] = []  # PUBACKed item ids, removed from disk in one commit
        self._cursor = 0
        self._queue_puts = 1  # > seen: look at the disk queue at least once after start
        self._queue_seen = 0

        self._next_state_check = 0.0

        # Renewal.
        self._renew_check_at = 0.0
        self._renew_next_poll = 0.0
        self._renew_poll_delay = 1.0
        self._renew_not_before = 0.0

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        self._stop_event.set()
        self._waker.wake()

    def update_config(self, config: DeviceConfig) -> None:
        """Take a new desired configuration; applied by the device thread itself."""
        self._new_cfg = config

    def queue_hint(self) -> None:
        """The agent queued an uplink item for this device."""
        self._queue_puts += 1
        self._waker.wake()

    @property
    def station(self) -> str:
        return self.agent.station

    @property
    def thing_name(self) -> str | None:
        return self.agent.state.device(self.cfg.name).get("thing_name")

    def _set_status(self, status: str, error: str | None = None) -> None:
        changed = status != self.status or (error is not None and error != self.last_error)
        self.status = status
        if error is not None:
            self.last_error = error
        if status == "error" and error:
            log.error("device %s: %s", self.cfg.name, error)
        if changed:
            self.agent.notify_change()

    def report(self) -> dict[str, Any]:
        """This device's entry of the state report (docs/agent-protocol.md)."""
        entry = self.agent.state.device(self.cfg.name)
        out: dict[str, Any] = {
            "name": self.cfg.name,
            "status": self.status,
            "connected": self.connected,
            "queue_depth": self.agent.queue.depth(self.cfg.name),
            "queue_dropped": self.agent.queue.dropped(self.cfg.name),
        }
        if entry.get("thing_name"):
            out["thing_name"] = entry["thing_name"]
        rid = (entry.get("pending_renewal") or {}).get("request_id") or entry.get("request_id")
        if rid is not None:
            out["onboarding_request_id"] = rid
        if entry.get("cert_serial"):
            out["certificate_serial"] = entry["cert_serial"]
        if entry.get("cert_not_after"):
            out["certificate_not_after"] = entry["cert_not_after"]
        if self.last_connected:
            out["last_connected"] = iso(self.last_connected)
        if self.last_error:
            out["last_error"] = self.last_error
        return out

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        try:
            self._run()
        finally:
            self._drop_connection()
            self._waker.close()

    def _run(self) -> None:
        retry = Backoff(minimum=1.0, maximum=max(1.0, self.opts.renewal_retry))
        while not self._stop_event.is_set():
            try:
                self._apply_new_config()
                if not self._ensure_onboarded():
                    continue
                self.onboarding_done = True
                self.agent.notify_change()
                if self.onboard_only:
                    return
                retry.reset()
                self._online_loop()
            except PortalAuthError as exc:
                self.agent.fatal(
                    f"the portal rejected the station token ({exc.status}); check --token-file."
                )
                return
            except (DeviceError, KeyFileError, ClaimError) as exc:
                self._set_status("error", str(exc))
                if self.onboard_only and self.status == "error":
                    self.onboarding_done = True
                    self.agent.notify_change()
                    return
                self._stop_event.wait(retry.next_delay())
            except Exception as exc:  # noqa: BLE001 - keep the station alive, report it
                log.exception("device %s: unexpected failure", self.cfg.name)
                self._set_status("error", f"unexpected failure: {type(exc).__name__}.")
                self._stop_event.wait(retry.next_delay())

    def _apply_new_config(self) -> bool:
        """Swap in a new desired config; True when the connection must be rebuilt."""
        new, self._new_cfg = self._new_cfg, None
        if new is None:
            return False
        old, self.cfg = self.cfg, new
        return old.connection_key() != new.connection_key()

    # ------------------------------------------------------------------ keys
    def _load_or_create_key(self, path: str, *, may_create: bool) -> PrivateKey:
        if Path(path).exists():
            return load_private_key(path, self.cfg.key_password)
        if not may_create:
            raise DeviceError(
                f"the key file {path} of a submitted request is missing; run "
                f"`fleet-agent reset --device {self.cfg.name}` to onboard again on purpose."
            )
        key = generate_private_key(self.cfg.key_type)
        save_private_key(path, key, self.cfg.key_password)
        log.info("device %s: generated a new %s key", self.cfg.name, self.cfg.key_type)
        return key

    def _csr_common_name(self) -> str:
        return f"{self.station}:{self.cfg.name}" if self.station else self.cfg.name

    def _install_certificate(
        self, *, key: PrivateKey, cert_pem: str, chain: list[str], generation: int
    ) -> dict[str, Any]:
        """Check the certificate is for our key and write cert, chain and full chain."""
        try:
            info = cert_info(cert_pem)
        except ValueError:
            raise DeviceError("the issued certificate is not a valid PEM certificate.") from None
        if info.public_key_der != public_key_der(key):
            raise DeviceError("the issued certificate does not match the device key.")
        cert_path = self.dev_dir / f"cert-{generation}.pem"
        chain_path = self.dev_dir / f"chain-{generation}.pem"
        full_path = self.dev_dir / f"fullchain-{generation}.pem"
        cert_text = cert_pem.strip() + "\n"
        chain_text = "".join(c.strip() + "\n" for c in chain)
        atomic_write(cert_path, cert_text.encode(), 0o644)
        atomic_write(chain_path, chain_text.encode(), 0o644)
        # JITP needs the issuing CA presented next to the device certificate.
        atomic_write(full_path, (cert_text + chain_text).encode(), 0o644)
        self._cert = info
        return {
            "cert_path": str(cert_path),
            "chain_path": str(chain_path),
            "fullchain_path": str(full_path),
            "cert_serial": info.serial_hex,
            "cert_not_after": iso(info.not_after),
            "cert_not_before": iso(info.not_before),
            "generation": generation,
        }

    # ------------------------------------------------------------------ onboarding
    def _ensure_onboarded(self) -> bool:
        entry = self.agent.state.device(self.cfg.name)
        if entry.get("completed"):
            for key in ("cert_path", "key_path"):
                if not Path(entry[key]).exists():
                    raise DeviceError(
                        f"the {key.split('_')[0]} file {entry[key]} is missing although the "
                        f"device is onboarded; run `fleet-agent reset --device {self.cfg.name}`."
                    )
            if self._cert is None:
                self._cert = cert_info(Path(entry["cert_path"]).read_bytes())
            return True
        if self.cfg.claim is not None:
            return self._onboard_by_claim(entry)
        if self.agent.portal is None:
            raise DeviceError("no portal and no claim configuration: cannot onboard.")
        return self._onboard_via_portal(entry)

    def _onboard_via_portal(self, entry: dict[str, Any]) -> bool:
        name = self.cfg.name
        generation = int(entry.get("generation", 1))
        key_path = entry.get("key_path") or str(self.dev_dir / f"key-{generation}.pem")
        request_id = entry.get("request_id")
        # Record the intent before creating the key: a crash then leaves a key we reuse.
        self.agent.state.update_device(
            name, key_path=key_path, generation=generation, provisioning="portal"
        )
        self._set_status("onboarding" if request_id is None else "awaiting_approval")
        key = self._load_or_create_key(key_path, may_create=request_id is None)
        unreachable = Backoff(minimum=1.0, maximum=self.opts.portal_retry_max)
        poll_delay = 1.0
        portal = self.agent.portal
        assert portal is not None
        while not self._stop_event.is_set():
            if self._apply_new_config():
                pass  # endpoint changes only matter once connected
            try:
                if request_id is None:
                    resp = portal.submit_request(
                        device=name,
                        csr=build_csr(key, self._csr_common_name()),
                        comment=self.cfg.comment,
                        renewal=False,
                    )
                    request_id = resp["id"]
                    self.agent.state.update_device(name, request_id=request_id)
                    log.info("device %s: onboarding request %s submitted", name, request_id)
                    self._set_status("awaiting_approval")
                resp = portal.get_request(request_id)
            except PortalUnreachable:
                delay = unreachable.next_delay()
                log.warning("portal unreachable at %s, retrying in %.0f s", portal.base_url, delay)
                self._stop_event.wait(delay)
                continue
            except PortalAuthError:
                raise
            except PortalError as exc:
                if exc.status == 404 and request_id is not None:
                    log.warning(
                        "device %s: request %s vanished; submitting again", name, request_id
                    )
                    request_id = None
                    self.agent.state.update_device(name, request_id=None)
                    continue
                raise DeviceError(
                    f"the portal refused the onboarding request: {exc.detail}"
                ) from None
            unreachable.reset()
            status = resp.get("status")
            if status == "issued":
                files = self._install_certificate(
                    key=key,
                    cert_pem=resp.get("certificate") or "",
                    chain=list(resp.get("chain") or []),
                    generation=generation,
                )
                assert self._cert is not None
                self.agent.state.update_device(
                    name, completed=True, thing_name=self._cert.common_name, **files
                )
                log.info("device %s: certificate issued for %s", name, self._cert.common_name)
                self._set_status("certificate_issued")
                return True
            if status in ("rejected", "failed"):
                reason = resp.get("reason") or "no reason given"
                raise DeviceError(f"onboarding request {request_id} was {status}: {reason}")
            self._set_status("awaiting_approval")
            self._stop_event.wait(poll_delay)
            poll_delay = min(poll_delay * 2, self.opts.request_poll_max)
        return False

    def _onboard_by_claim(self, entry: dict[str, Any]) -> bool:
        name = self.cfg.name
        claim = self.cfg.claim
        assert claim is not None
        generation = int(entry.get("generation", 1))
        key_path = entry.get("key_path") or str(self.dev_dir / f"key-{generation}.pem")
        self.agent.state.update_device(
            name, key_path=key_path, generation=generation, provisioning="claim", completed_fp=False
        )
        self._set_status("onboarding")
        key = self._load_or_create_key(key_path, may_create=True)
        addr = parse_connect_host(self.opts.connect_host, self.cfg.port)
        result = provision_by_claim(
            claim=claim,
            csr_pem=build_csr(key, self._csr_common_name()),
            endpoint=self.cfg.endpoint,
            port=self.cfg.port,
            client_id=claim.client_id or f"claim-{self._csr_common_name()}",
            ca_file=self.opts.broker_ca,
            connect_addr=addr,
            stop=self._stop_event,
        )
        files = self._install_certificate(
            key=key, cert_pem=result.certificate_pem, chain=[], generation=generation
        )
        self.agent.state.update_device(
            name,
            completed=True,
            completed_fp=True,
            thing_name=result.thing_name,
            certificate_id=result.certificate_id,
            device_configuration=result.device_configuration,
            **files,
        )
        log.info("device %s: provisioned by claim as %s", name, result.thing_name)
        self._set_status("certificate_issued")
        return True

    # ------------------------------------------------------------------ connection
    def _online_loop(self) -> None:
        self._next_connect = max(time.monotonic(), self._last_attempt + 1.0)
        while not self._stop_event.is_set():
            if self._apply_new_config():
                self._drop_connection()
                self._next_connect = max(time.monotonic(), self._last_attempt + 1.0)
            now = time.monotonic()
            if now >= self._next_state_check:
                self._next_state_check = now + 1.0
                if not self.agent.state.device(self.cfg.name).get("completed"):
                    self._drop_connection()
                    return  # reset underneath us: onboard again
            if self.client is None and now >= self._next_connect:
                self._connect()
            client = self.client
            if client is not None:
                # Short waits only while there is something to send; idle devices sleep in
                # poll() until the next heartbeat (or a wake-up) so many agents fit a process.
                busy = bool(self._inflight) or self._queue_seen != self._queue_puts
                assert self._pump is not None
                idle = min(1.0, max(0.0, self._hb_next - now)) if self._mqtt_ready else 1.0
                rc = self._pump.pump(0.01 if busy else idle)
                if self.client is not client:
                    pass  # a callback already closed this connection
                elif rc != mqtt.MQTT_ERR_SUCCESS:
                    self._connection_lost(f"connection lost ({mqtt.error_string(rc)})")
                elif (
                    self._mqtt_ready
                    and self._conn_backoff.attempt
                    and now - self._connected_at >= self.opts.stable_after
                ):
                    self._conn_backoff.reset()
            else:
                self._waker.wait(min(1.0, max(0.0, self._next_connect - now)))
            if self._mqtt_ready and self.client is not None:
                self._heartbeat_tick()
                self._drain_queue()
            self._renewal_tick()
            if self._reconnect_requested:
                self._reconnect_requested = False
                self._drop_connection()
                self._next_connect = max(time.monotonic(), self._last_attempt + 1.0)
        self._drop_connection()

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
        in the state report; a revoked certificate needs a new onboarding request."""
        delay = self._conn_backoff.at_maximum()
        self._next_connect = max(time.monotonic() + delay, self._last_attempt + 1.0)
        self.connected = False
        self._set_status(
            "error",
            f"the broker refused the certificate ({how}): it may be revoked or inactive in "
            f"AWS IoT; retrying in {delay:.0f} s. A revoked certificate needs a new "
            "onboarding request that staff approve.",
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
            filename = f"cmd-{_safe_name(cmd_id)}.json"
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

    # ------------------------------------------------------------------ renewal
    def renew_due_at(self) -> dt.datetime | None:
        """When this certificate should be renewed (portal's renew_after, else 2/3 life)."""
        if self._cert is None:
            return None
        ra = self.cfg.renew_after
        # A renew_after older than the certificate belongs to its predecessor.
        if ra is not None and ra >= self._cert.not_before:
            return ra
        return self._cert.default_renew_at()

    def _renewal_tick(self) -> None:
        portal = self.agent.portal
        if portal is None or self._cert is None:
            return
        now = time.monotonic()
        if now < self._renew_check_at:
            return
        self._renew_check_at = now + 1.0
        entry = self.agent.state.device(self.cfg.name)
        pending = entry.get("pending_renewal")
        if not pending:
            due = self.renew_due_at()
            if due is None or utcnow() < due or now < self._renew_not_before:
                return
            generation = int(entry.get("generation", 1)) + 1
            pending = {
                "generation": generation,
                "key_path": str(self.dev_dir / f"key-{generation}.pem"),
                "started": iso(utcnow()),
            }
            self.agent.state.update_device(self.cfg.name, pending_renewal=pending)
            log.info("device %s: certificate due for renewal (due %s)", self.cfg.name, iso(due))
            self._renew_next_poll = 0.0
            self._renew_poll_delay = 1.0
        if now < self._renew_next_poll:
            return
        try:
            self._renewal_step(pending)
        except PortalUnreachable:
            self._renew_next_poll = now + self._next_renew_delay()
            log.warning(
                "portal unreachable at %s, retrying in %.0f s",
                portal.base_url,
                self._renew_next_poll - now,
            )
        except PortalAuthError:
            raise
        except (PortalError, DeviceError, KeyFileError) as exc:
            msg = exc.detail if isinstance(exc, PortalError) else str(exc)
            self._abandon_renewal(pending, f"certificate renewal failed: {msg}")

    def _next_renew_delay(self) -> float:
        delay = self._renew_poll_delay
        self._renew_poll_delay = min(self._renew_poll_delay * 2, self.opts.request_poll_max)
        return delay

    def _abandon_renewal(self, pending: dict[str, Any], why: str) -> None:
        self.last_error = why
        log.error("device %s: %s", self.cfg.name, why)
        self.agent.state.update_device(self.cfg.name, pending_renewal=None)
        remove_quietly(pending.get("key_path"))
        self._renew_not_before = time.monotonic() + self.opts.renewal_retry
        self.agent.notify_change()

    def _renewal_step(self, pending: dict[str, Any]) -> None:
        portal = self.agent.portal
        assert portal is not None
        name = self.cfg.name
        key = self._load_or_create_key(
            pending["key_path"], may_create=pending.get("request_id") is None
        )
        if pending.get("request_id") is None:
            resp = portal.submit_request(
                device=name,
                csr=build_csr(key, self._csr_common_name()),
                comment=self.cfg.comment,
                renewal=True,
            )
            pending = {**pending, "request_id": resp["id"]}
            self.agent.state.update_device(name, pending_renewal=pending)
            log.info("device %s: renewal request %s submitted", name, resp["id"])
            self.agent.notify_change()
        resp = portal.get_request(pending["request_id"])
        status = resp.get("status")
        if status == "issued":
            entry = self.agent.state.device(name)
            files = self._install_certificate(
                key=key,
                cert_pem=resp.get("certificate") or "",
                chain=list(resp.get("chain") or []),
                generation=int(pending["generation"]),
            )
            retired = {
                k: entry[k]
                for k in ("key_path", "cert_path", "chain_path", "fullchain_path")
                if entry.get(k)
            }
            assert self._cert is not None
            self.agent.state.update_device(
                name,
                key_path=pending["key_path"],
                request_id=pending["request_id"],
                thing_name=self._cert.common_name,
                pending_renewal=None,
                retired=retired,
                renewed_at=iso(utcnow()),
                **files,
            )
            log.info("device %s: renewed certificate installed; reconnecting", name)
            self._renew_poll_delay = 1.0
            self._reconnect_requested = True
            self.agent.notify_change()
            return
        if status in ("rejected", "failed"):
            raise DeviceError(
                f"renewal request {pending['request_id']} was {status}: "
                f"{resp.get('reason') or 'no reason given'}"
            )
        self._renew_next_poll = time.monotonic() + self._next_renew_delay()
