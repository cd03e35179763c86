"""Reads of connections that more than one door needs (API, admin, agent configuration)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, QuerySet

from .models import Connection

if TYPE_CHECKING:
    from devices.models import MqttDevice

#: What the agent uses when a device is bound to no connection (docs/agent-protocol.md).
DEFAULT_UPLINK_TOPIC = "things/{thing}/uplink/{point}"
DEFAULT_DOWNLINK_TOPIC = "things/{thing}/downlink"


def connection_list() -> QuerySet[Connection]:
    return (
        Connection.objects.select_related("access_key")
        .annotate(device_count=Count("devices"))
        .order_by("name")
    )


def device_topic_patterns(device: MqttDevice) -> dict[str, Any]:
    """The topic fields of a device's entry in ``GET /api/v1/agent/config``.

    Always returns ``uplink_topic`` and ``downlink_topic`` (``None`` means: subscribe to no
    downlink topic), the protocol defaults when the device is bound to no connection.
    ``connection`` names the bound connection (or is ``None``) and ``endpoint`` is its
    account's data endpoint (or ``None``); the agent-config endpoint may use it when the
    device has no endpoint of its own. Uses ``device.connection`` (select_related it).
    """
    conn = device.connection if device.connection_id else None
    if conn is None:
        return topic_patterns(None)
    return topic_patterns(
        {
            "name": conn.name,
            "endpoint": conn.endpoint,
            "uplink_topic_pattern": conn.uplink_topic_pattern,
            "downlink_topic_pattern": conn.downlink_topic_pattern,
        }
    )


def topic_patterns(connection: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`device_topic_patterns` from a bound connection's columns (``name``,
    ``endpoint``, ``uplink_topic_pattern``, ``downlink_topic_pattern``), or ``None``."""
    if connection is None:
        return {
            "uplink_topic": DEFAULT_UPLINK_TOPIC,
            "downlink_topic": DEFAULT_DOWNLINK_TOPIC,
            "connection": None,
            "endpoint": None,
        }
    return {
        "uplink_topic": connection["uplink_topic_pattern"],
        "downlink_topic": connection["downlink_topic_pattern"] or None,
        "connection": connection["name"],
        "endpoint": connection["endpoint"],
    }
