"""Fleet provisioning by claim: the AWS provisioning template, claim certificate and the
bundle a station uses to get its own certificate from AWS."""

from .bundle import ClaimSetupNotReady, claim_bundle_build
from .documents import claim_policy_document, claim_template_body, device_policy_document
from .services import claim_setup_run, claim_setup_save, claim_setup_start

__all__ = [
    "ClaimSetupNotReady",
    "claim_bundle_build",
    "claim_policy_document",
    "claim_setup_run",
    "claim_setup_save",
    "claim_setup_start",
    "claim_template_body",
    "device_policy_document",
]
