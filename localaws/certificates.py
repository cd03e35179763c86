"""Device certificates leaving ACTIVE, as AWS IoT handles them.

* UpdateCertificate accepts the statuses AWS lets callers set (ACTIVE, INACTIVE, REVOKED) and
  refuses to activate a REVOKED certificate (CertificateStateException), as AWS does.
* When a certificate leaves ACTIVE (UpdateCertificate to INACTIVE/REVOKED, DeleteCertificate),
  every listener registered with :func:`on_certificate_deactivated` is told its id; the MQTT
  front closes that certificate's live sessions at once (AWS: "within a few minutes").
* DeleteCertificate keeps moto's checks, which are AWS's: an ACTIVE certificate is refused
  with CertificateStateException (HTTP 406), one still attached to a thing or a policy with
  DeleteConflictException (409; ``forceDelete`` skips the policy check only).

Patched into moto by ``iot_extensions.apply`` together with the rest of the stand-in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from moto.iot.exceptions import CertificateStateException, InvalidRequestException
from moto.iot.models import IoTBackend

log = logging.getLogger(__name__)

SETTABLE_STATUSES = ("ACTIVE", "INACTIVE", "REVOKED")

_listeners: list[Callable[[str], None]] = []
_listeners_lock = threading.Lock()


def on_certificate_deactivated(listener: Callable[[str], None]) -> Callable[[], None]:
    """Call ``listener(certificate_id)`` whenever a certificate leaves ACTIVE; returns the
    function that unregisters it."""
    with _listeners_lock:
        _listeners.append(listener)

    def remove() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def _deactivated(certificate_id: str) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(certificate_id)
        except Exception:  # a listener's failure never fails the API call
            log.exception("certificate listener failed for %s", certificate_id[:12])


def make_patches(originals: dict[str, Any]) -> dict[str, Any]:
    """IoTBackend methods for :func:`iot_extensions.apply` (``originals``: moto's own)."""
    base_update = originals["update_certificate"]
    base_delete = originals["delete_certificate"]

    def update_certificate(self: IoTBackend, certificate_id: str, new_status: str) -> None:
        if new_status not in SETTABLE_STATUSES:
            raise InvalidRequestException(
                f"newStatus must be one of {', '.join(SETTABLE_STATUSES)}, not {new_status}."
            )
        cert = self.describe_certificate(certificate_id)
        was = cert.status
        if was == "REVOKED" and new_status == "ACTIVE":
            raise CertificateStateException(
                "A certificate in REVOKED status cannot be activated.", cert.certificate_id
            )
        base_update(self, certificate_id, new_status)
        if was == "ACTIVE" and new_status != "ACTIVE":
            _deactivated(cert.certificate_id)

    def delete_certificate(self: IoTBackend, certificate_id: str, force_delete: bool) -> None:
        base_delete(self, certificate_id, force_delete)
        _deactivated(certificate_id)

    return {"update_certificate": update_certificate, "delete_certificate": delete_certificate}
