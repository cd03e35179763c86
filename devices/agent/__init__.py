"""Station agent: onboards a station's MQTT devices through the portal and keeps them online.

Pure Python (cryptography, paho-mqtt, requests); nothing here imports Django so the agent
can run on a small field controller. ``Agent`` is the in-process entry point, ``cli.main``
the ``fleet-agent`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
