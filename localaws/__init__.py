"""Local AWS IoT stand-in: moto control plane + MQTT/TLS device gateway with real JITP.

A running `LocalAws` patches moto with the extensions in `iot_extensions`; the patches are
undone when the last stand-in of the process stops.
"""

from .server import LocalAws, parse_broker

__all__ = ["LocalAws", "parse_broker"]
