"""JITP (just-in-time provisioning): register the supervisor's CA with AWS IoT so devices
whose certificates it signed become things on their first connection.

``services`` holds what the doors call (settings, start, run); ``steps`` and ``preflight``
the job's steps; ``documents`` the policy, template and verification certificate.
"""

from .documents import (
    SEVEN_ACTIONS,
    THING_NAME_VARIABLE,
    policy_document_build,
    template_body_build,
    template_certificate_parameters,
)
from .services import jitp_settings_get, jitp_settings_update, jitp_setup_run, jitp_setup_start

__all__ = [
    "SEVEN_ACTIONS",
    "THING_NAME_VARIABLE",
    "jitp_settings_get",
    "jitp_settings_update",
    "jitp_setup_run",
    "jitp_setup_start",
    "policy_document_build",
    "template_body_build",
    "template_certificate_parameters",
]
