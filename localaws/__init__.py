"""Local AWS IoT stand-in: moto control plane + MQTT/TLS device gateway with real JITP.

Importing the package applies the moto extensions (see `iot_extensions`).
"""

from . import iot_extensions as _iot_extensions  # noqa: F401  (patches moto at import)
from .server import LocalAws, parse_broker

__all__ = ["LocalAws", "parse_broker"]
