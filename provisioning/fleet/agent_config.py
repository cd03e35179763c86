"""The desired configuration of a station, as GET /api/v1/agent/config serves it
(docs/agent-protocol.md), and its ETag.

A device bound to a connection takes its topic patterns from it (docs/connections.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef

from devices.models import MqttDevice, Station

from ..connections.selectors import device_topic_patterns
from ..jobs.models import Job
from .models import FleetInstallStation

DEFAULT_TOPICS = {
    "uplink_topic": "things/{thing}/uplink/{point}",
    "downlink_topic": "things/{thing}/downlink",
    "heartbeat_topic": "things/{thing}/heartbeat",
}


def _device_key_type(device: MqttDevice) -> str:
    profile = device.signing_profile
    accepted = list(profile.accepted_key_types or []) if profile is not None else []
    if not accepted or "ec-p256" in accepted:
        return "ec-p256"
    return str(accepted[0])


def _renew_after(cert: Any) -> str | None:
    """The renewal point the agent acts on: a forced renewal brings it forward."""
    if cert is None:
        return None
    when = cert.renew_after
    if cert.renewal_forced_at is not None:
        when = min(when, cert.renewal_forced_at)
    return str(when.isoformat())


def _awaiting_delivery() -> Exists:
    """Whether a running fleet install placed this device and waits for the agent to fetch
    it (the same rows as ``fleet_config_delivered`` moves), as a subquery of the config's
    one query: a poll with nothing to deliver does no delivery bookkeeping at all."""
    return Exists(
        FleetInstallStation.objects.filter(
            device=OuterRef("pk"),
            status=FleetInstallStation.Status.QUEUED,
            dispatched_at__isnull=False,
            install__job__status=Job.Status.RUNNING,
        )
    )


def _agent_config_and_versions(station: Station) -> tuple[dict[str, Any], list[Any], bool]:
    """The desired configuration, the row versions its ETag must also cover, and whether a
    fleet install waits for this station to fetch one of its devices.

    A device bound to a connection takes its topic patterns (and, when the device has no
    endpoint of its own, the account's endpoint) from it (docs/connections.md).
    """
    devices = (
        MqttDevice.objects.filter(station=station)
        .select_related("signing_profile", "current_certificate", "connection")
        .annotate(awaiting_delivery=_awaiting_delivery())
        .order_by("name")
    )
    out = []
    versions: list[Any] = []
    awaiting = False
    for device in devices:
        awaiting = awaiting or bool(device.awaiting_delivery)  # type: ignore[attr-defined]
        cert = device.current_certificate
        topics = device_topic_patterns(device)
        out.append(
            {
                "name": device.name,
                "endpoint": device.endpoint or topics["endpoint"] or "",
                "port": device.port,
                "key_password": device.key_password or "",
                "comment": device.onboarding_comment,
                "key_type": _device_key_type(device),
                "renew_after": _renew_after(cert),
                # Which certificate renew_after belongs to: an agent that holds another one
                # (a renewal it has not been configured for yet) ignores it.
                "certificate_serial": cert.serial if cert is not None else None,
                "heartbeat_interval": settings.AGENT_HEARTBEAT_INTERVAL,
                **DEFAULT_TOPICS,
                "uplink_topic": topics["uplink_topic"],
                "downlink_topic": topics["downlink_topic"],
            }
        )
        conn = device.connection if device.connection_id else None
        versions.append(
            [
                device.name,
                device.connection_id,
                conn.updated_at.isoformat() if conn is not None else None,
            ]
        )
    config = {
        "station": station.name,
        "poll_interval": settings.AGENT_POLL_INTERVAL,
        "devices": out,
    }
    return config, versions, awaiting


def station_agent_config(station: Station) -> dict[str, Any]:
    """The desired configuration of one station (docs/agent-protocol.md).

    It carries the station's own certificate passwords, so it must only ever be built for
    the station that authenticated.
    """
    return _agent_config_and_versions(station)[0]


def station_agent_config_with_etag(station: Station) -> tuple[dict[str, Any], str, bool]:
    """The configuration, its ETag (which also covers each bound connection's id and
    ``updated_at``: a PUT on a connection changes the ETag of every station using it), and
    whether a fleet install waits for the station to fetch it (delivery bookkeeping due)."""
    config, versions, awaiting = _agent_config_and_versions(station)
    return config, config_etag(config, versions=versions), awaiting


def config_etag(config: dict[str, Any], *, versions: list[Any] | None = None) -> str:
    """A strong ETag over the canonical JSON: a hash, so it reveals nothing of the secrets."""
    body: Any = config if versions is None else {"config": config, "versions": versions}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match header against our ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [c.strip() for c in if_none_match.split(",")]
    return any(c.removeprefix("W/") == etag for c in candidates)
