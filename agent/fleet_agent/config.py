"""Agent options (CLI / JSON file) and the per-device desired configuration from the portal."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet_agent.keys import KEY_TYPES

DEFAULT_HEARTBEAT_TOPIC = "things/{thing}/heartbeat"
DEFAULT_UPLINK_TOPIC = "things/{thing}/uplink/{point}"
DEFAULT_DOWNLINK_TOPIC = "things/{thing}/downlink"


class ConfigError(Exception):
    """A configuration value is unusable; the message is one sentence."""


@dataclass
class AgentOptions:
    """Everything the agent needs besides the portal's desired configuration.

    Defaults suit a real station; tests and benchmarks shrink the timings.
    """

    state_dir: Path
    portal: str | None = None
    token: str | None = field(default=None, repr=False)
    portal_ca: str | None = None
    broker_ca: str | None = None
    connect_host: str | None = None
    poll_interval: float | None = None  # overrides the portal's value when set
    request_poll_max: float = 30.0
    portal_retry_max: float = 60.0
    reconnect_max: float = 60.0
    stable_after: float = 10.0
    keepalive: int = 30
    rate_limit: bool = True
    max_publish_rate: float = 100.0
    max_bytes_rate: float = 512 * 1024
    queue_max_messages: int = 100_000
    queue_max_bytes: int = 64 * 1024 * 1024
    inflight_window: int = 50
    renewal_retry: float = 60.0
    exit_when_connected: bool = False
    once: bool = False
    cache_secrets: bool = True  # key passwords in desired.json (False: only in memory)
    timeout: float | None = None
    local_devices: list[dict[str, Any]] = field(default_factory=list)
    station: str | None = None  # station name for local-only mode
    claim: dict[str, Any] | None = field(default=None, repr=False)  # default claim for devices

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)


def parse_connect_host(value: str | None, default_port: int) -> tuple[str, int] | None:
    """``HOST[:PORT]`` as used by ``--connect-host`` (like ``curl --resolve``)."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return value.strip("[]"), default_port


def parse_iso(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{value!r} is not an ISO 8601 timestamp.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{value!r} is not an ISO 8601 timestamp.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


@dataclass(frozen=True)
class ClaimConfig:
    """Fleet provisioning by claim (AWS IoT CreateCertificateFromCsr + RegisterThing)."""

    template_name: str
    certificate: str
    key: str
    key_password: str | None = field(default=None, repr=False)
    parameters: dict[str, Any] = field(default_factory=dict)
    client_id: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClaimConfig:
        try:
            template = data["template_name"]
            cert = data["certificate"]
            key = data["key"]
        except KeyError as exc:
            raise ConfigError(f"the claim configuration lacks {exc.args[0]!r}.") from None
        params = data.get("parameters") or {}
        if not isinstance(params, dict):
            raise ConfigError("the claim 'parameters' must be an object.")
        return cls(
            template_name=str(template),
            certificate=str(cert),
            key=str(key),
            key_password=data.get("key_password"),
            parameters=dict(params),
            client_id=data.get("client_id"),
        )


@dataclass(frozen=True)
class DeviceConfig:
    """One MQTT device as the portal (or a local config file) wants it."""

    name: str
    endpoint: str
    port: int = 8883
    key_password: str = field(default="", repr=False)
    comment: str = ""
    key_type: str = "ec-p256"
    renew_after: dt.datetime | None = None
    certificate_serial: str | None = None
    certificate_status: str | None = None  # of certificate_serial: active|superseded|revoked
    heartbeat_interval: float = 30.0
    uplink_topic: str = DEFAULT_UPLINK_TOPIC
    downlink_topic: str | None = DEFAULT_DOWNLINK_TOPIC
    heartbeat_topic: str = DEFAULT_HEARTBEAT_TOPIC
    claim: ClaimConfig | None = None

    @classmethod
    def from_dict(cls, data: Any) -> DeviceConfig:
        if not isinstance(data, dict):
            raise ConfigError("a device entry must be a JSON object.")
        name = data.get("name")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"device name {name!r} is not a valid name.")
        endpoint = data.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise ConfigError(f"device {name!r} has no MQTT endpoint.")
        key_type = data.get("key_type") or "ec-p256"
        if key_type not in KEY_TYPES:
            raise ConfigError(f"device {name!r} has unsupported key type {key_type!r}.")
        try:
            port = int(data.get("port") or 8883)
            heartbeat = float(data.get("heartbeat_interval") or 30)
        except (TypeError, ValueError):
            raise ConfigError(f"device {name!r} has a non-numeric port or interval.") from None
        claim = data.get("claim")
        return cls(
            name=name,
            endpoint=endpoint,
            port=port,
            key_password=str(data.get("key_password") or ""),
            comment=str(data.get("comment") or ""),
            key_type=key_type,
            renew_after=parse_iso(data.get("renew_after")),
            certificate_serial=str(data.get("certificate_serial") or "") or None,
            certificate_status=str(data.get("certificate_status") or "") or None,
            heartbeat_interval=max(heartbeat, 0.1),
            uplink_topic=data.get("uplink_topic") or DEFAULT_UPLINK_TOPIC,
            downlink_topic=data.get("downlink_topic", DEFAULT_DOWNLINK_TOPIC) or None,
            heartbeat_topic=data.get("heartbeat_topic") or DEFAULT_HEARTBEAT_TOPIC,
            claim=ClaimConfig.from_dict(claim) if isinstance(claim, dict) else None,
        )

    def connection_key(self) -> tuple[Any, ...]:
        """Fields whose change needs a new MQTT connection."""
        return (self.endpoint, self.port, self.downlink_topic)


def render_topic(pattern: str, *, thing: str, station: str, device: str, point: str = "") -> str:
    """Fill ``{thing} {station} {device} {point}`` (``{DevEUI}`` = device) in a topic pattern."""
    return (
        pattern.replace("{thing}", thing)
        .replace("{station}", station)
        .replace("{device}", device)
        .replace("{DevEUI}", device)
        .replace("{point}", point)
    )
