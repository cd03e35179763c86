"""Local AWS IoT stand-in: moto control plane + MQTT/TLS device gateway with real JITP.

A running `LocalAws` patches moto with the extensions in `iot_extensions`; the patches are
undone when the last stand-in of the process stops. moto is not a run-time dependency of the
portal: it comes with the ``localaws`` extra (``pip install -e '.[localaws]'``).
"""

try:
    from .server import LocalAws, parse_broker
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] != "moto":
        raise
    raise ModuleNotFoundError(
        "The local AWS stand-in needs moto, which comes with the portal's localaws extra: "
        "pip install -e '.[localaws]'.",
        name=exc.name,
    ) from exc

__all__ = ["LocalAws", "parse_broker"]
