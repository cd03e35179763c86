"""Station agent: onboards a station's MQTT devices through the portal and keeps them online.

Pure Python (cryptography, paho-mqtt and the standard library), distributed on its own as
``fleet-agent`` so that a small field controller installs nothing of the portal. ``Agent``
is the in-process entry point, ``cli.main`` the ``fleet-agent`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
