"""Receivers of the signing service's signals: what a change in the portal means in AWS.

Connected in ``ProvisioningConfig.ready``. They run inside the sender's transaction, so the
AWS actions they record commit or roll back with the change that caused them.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from signing.signals import certificate_revoked, certificate_superseded

from .retirement import on_certificate_superseded
from .revocation import revocation_enqueue


@receiver(certificate_revoked, dispatch_uid="provisioning.lifecycle.revocation")
def certificate_revoked_in_aws(
    sender: Any, certificate: Any, reason: str, actor: Any = None, **kwargs: Any
) -> None:
    """Revoke in AWS what the portal revoked: REVOKED, policies detached, quarantine group."""
    revocation_enqueue(
        certificate=certificate,
        reason=reason,
        actor=actor,
        actor_label=kwargs.get("actor_label", ""),
    )


# Retire in AWS what a proven renewal superseded (provisioning/lifecycle/retirement.py).
certificate_superseded.connect(
    on_certificate_superseded, dispatch_uid="lifecycle_retire_superseded"
)
