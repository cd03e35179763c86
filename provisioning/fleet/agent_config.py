"""The desired configuration of a station, as GET /api/v1/agent/config serves it
(docs/agent-protocol.md), and its ETag.

A device bound to a connection takes its topic patterns from it (docs/connections.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings

from devices.models import Station

from ..connections.selectors import topic_patterns
from .agent_reads import station_device_rows

DEFAULT_TOPICS = {
    "uplink_topic": "things/{thing}/uplink/{point}",
    "downlink_topic": "things/{thing}/downlink",
    "heartbeat_topic": "things/{thing}/heartbeat",
}


def _key_type(accepted_key_types: list[str] | None) -> str:
    """The key type the agent makes: EC P-256 unless the profile does not accept it."""
    accepted = list(accepted_key_types or [])
    if not accepted or "ec-p256" in accepted:
        return "ec-p256"
    return str(accepted[0])


def _renew_after(row: dict[str, Any]) -> str | None:
    """The renewal point the agent acts on: a forced renewal brings it forward."""
    when = row["renew_after"]
    if when is None:
        return None
    if row["renewal_forced_at"] is not None:
        when = min(when, row["renewal_forced_at"])
    return str(when.isoformat())


def _agent_config_and_versions(station: Station) -> tuple[dict[str, Any], list[Any], bool]:
    """The desired configuration, the row versions its ETag must also cover, and whether a
    fleet install waits for this station to fetch one of its devices.

    A device bound to a connection takes its topic patterns (and, when the device has no
    endpoint of its own, the account's endpoint) from it (docs/connections.md).
    """
    out = []
    versions: list[Any] = []
    awaiting = False
    for row in station_device_rows(station.pk):
        awaiting = awaiting or row["awaiting_delivery"]
        bound = row["connection_id"] is not None
        topics = topic_patterns(
            {
                "name": row["connection_name"],
                "endpoint": row["connection_endpoint"],
                "uplink_topic_pattern": row["uplink_topic_pattern"],
                "downlink_topic_pattern": row["downlink_topic_pattern"],
            }
            if bound
            else None
        )
        out.append(
            {
                "name": row["name"],
                "endpoint": row["endpoint"] or topics["endpoint"] or "",
                "port": row["port"],
                "key_password": row["key_password"] or "",
                "comment": row["comment"],
                "key_type": _key_type(row["accepted_key_types"]),
                "renew_after": _renew_after(row),
                # Which certificate renew_after belongs to: an agent that holds another one
                # (a renewal it has not been configured for yet) ignores it.
                "certificate_serial": row["certificate_serial"],
                # Its status: an agent holding a revoked certificate takes the recovery path.
                "certificate_status": row["certificate_status"],
                "heartbeat_interval": settings.AGENT_HEARTBEAT_INTERVAL,
                **DEFAULT_TOPICS,
                "uplink_topic": topics["uplink_topic"],
                "downlink_topic": topics["downlink_topic"],
            }
        )
        updated = row["connection_updated_at"]
        versions.append([row["name"], row["connection_id"], updated.isoformat() if bound else None])
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
