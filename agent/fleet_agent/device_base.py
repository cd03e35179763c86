"""What every device runtime shares: its facts, control, status report and key material.

``DeviceWorker`` (fleet_agent.device) is assembled from this base and three concerns:
onboarding (fleet_agent.onboarding), the MQTT session (fleet_agent.session) and renewal
with its recovery path (fleet_agent.renewal).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet_agent.config import DeviceConfig
from fleet_agent.fsutil import atomic_write
from fleet_agent.keys import (
    CertInfo,
    PrivateKey,
    cert_info,
    generate_private_key,
    load_private_key,
    public_key_der,
    save_private_key,
)
from fleet_agent.mqtt_link import Backoff, Waker
from fleet_agent.ratelimit import PublishLimiter

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from fleet_agent.agent import Agent
    from fleet_agent.errands import Errand
    from fleet_agent.mqtt_link import SocketPump

log = logging.getLogger("fleet_agent")

STATUSES = (
    "installed",
    "onboarding",
    "awaiting_approval",
    "certificate_issued",
    "connected",
    "error",
)


class DeviceError(Exception):
    """This device cannot proceed for now; the message is one sentence for the operator."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:120] or "_"


class DeviceBase(threading.Thread):
    """Owns one device's key material, facts and status; the concerns add behaviour."""

    def __init__(self, agent: Agent, config: DeviceConfig, *, onboard_only: bool = False) -> None:
        super().__init__(name=f"fleet-agent-{agent.label}-{config.name}", daemon=True)
        self.agent = agent
        self.opts = agent.options
        self.cfg = config
        self.onboard_only = onboard_only
        self._new_cfg: DeviceConfig | None = None
        self._waker = Waker()
        self._stop_event = threading.Event()
        self.dev_dir = self.opts.state_dir / "devices" / safe_name(config.name)
        self.inbox_dir = self.opts.state_dir / "inbox" / safe_name(config.name)

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
        # A renewal step running on the agent's helper thread, and the pending entry it had.
        self._renew_job: tuple[Errand, dict[str, Any]] | None = None
        self._renew_next_poll = 0.0
        self._renew_poll_delay = 1.0
        self._renew_not_before = 0.0
        # Pauses between recovery requests grow, so staff are not flooded after a rejection.
        recovery_min = max(1.0, self.opts.renewal_retry)
        self._recovery_backoff = Backoff(minimum=recovery_min, maximum=max(recovery_min, 3600.0))

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

    def status_entry(self) -> dict[str, Any]:
        """The report plus what ``fleet-agent status`` shows a technician (status.json)."""
        out = self.report()
        entry = self.agent.state.device(self.cfg.name)
        pending = entry.get("pending_renewal") or {}
        due = self.renew_due_at()
        if due is not None:
            out["renew_at"] = iso(due)
        if pending:
            out["replacing"] = {
                "mode": pending.get("mode", "renewal"),
                "why": pending.get("why"),
                "request_id": pending.get("request_id"),
            }
        if entry.get("recovery"):
            out["recovery"] = entry["recovery"]
        out["waiting_for"] = self.waiting_for(entry)
        return out

    def waiting_for(self, entry: dict[str, Any]) -> str:
        """One sentence: what this device needs next (from whom) to go on."""
        pending = entry.get("pending_renewal") or {}
        rid = pending.get("request_id")
        if pending.get("mode") == "recovery":
            if rid is None:
                return "sending a recovery request (new key) to the portal"
            return f"staff to approve recovery request {rid} in the portal"
        if not entry.get("completed"):
            if self.status == "error" and self.last_error:
                return f"a retry after: {self.last_error}"
            if entry.get("request_id") is not None:
                return f"staff to approve onboarding request {entry['request_id']} in the portal"
            return "sending the onboarding request to the portal"
        if pending:
            if rid is None:
                return "sending a renewal request to the portal"
            return f"the portal to issue renewal request {rid}"
        if not self.connected:
            return f"a connection to {self.cfg.endpoint}:{self.cfg.port}" + (
                f" (last error: {self.last_error})" if self.last_error else ""
            )
        due = self.renew_due_at()
        return f"nothing; next renewal from {iso(due)}" if due else "nothing"

    def renew_due_at(self) -> dt.datetime | None:
        raise NotImplementedError

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
