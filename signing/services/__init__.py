"""Services of the signing app, by concern; this package re-exports what the doors use.

- :mod:`.authorities`: certificate authorities in the key store (generate, import).
- :mod:`.profiles`: signing profiles and the Common Name template.
- :mod:`.requests`: onboarding requests (submit, fetch); :mod:`.decisions`: approve,
  reject, the hand-off to signing, the sweep.
- :mod:`.issuance`: the batch signing path; :mod:`.certificate_build`: what a profile puts in
  each certificate.
- :mod:`.certificates`: revocation, forced renewal, the renewal check, CA-expiry warnings.
- :mod:`.renewal`: what a renewal request must show (proof of the current key, its time).
- :mod:`.retirement`: active certificates per CA, "renew now", a CA's retirement check and
  archive (what a CA rotation needs).
"""

from __future__ import annotations

from .authorities import MIN_CA_PASSWORD_LENGTH, ca_generate, ca_import_pem, ca_import_pkcs12
from .certificate_build import BuiltCertificate, certificate_build
from .certificates import (
    CA_EXPIRY_THRESHOLDS,
    CA_EXPIRY_WARNING_DAYS,
    REVOCATION_REASONS,
    CaExpiryNotice,
    RenewalCheck,
    ca_expiry_notices,
    ca_expiry_threshold,
    ca_expiry_warnings,
    certificate_aws_observed,
    certificate_connected,
    certificate_revoke,
    certificate_supersede,
    certificates_force_renewal,
    certificates_revoke,
    renewals_check,
    revocation_reason_parse,
)
from .decisions import (
    BATCH_SIZE,
    SWEEP_AFTER_SECONDS,
    onboarding_requests_approve,
    onboarding_requests_fail,
    onboarding_requests_reject,
    onboarding_requests_sweep,
)
from .issuance import BatchResult, onboarding_requests_sign
from .profiles import (
    CN_PLACEHOLDERS,
    cn_render,
    cn_template_validate,
    csr_check,
    signing_profile_create,
    signing_profile_for_device,
    signing_profile_save,
    signing_profile_validate,
    signing_profiles_switch_ca,
)
from .renewal import renewal_check, renewal_proof_check, renewal_proof_message
from .requests import (
    onboarding_request_fetched,
    onboarding_request_for_station,
    onboarding_request_submit,
)
from .retirement import (
    ca_active_certificates,
    ca_archive,
    ca_retirement_check,
    cas_with_active_counts,
    certificates_renew_now,
)

__all__ = [
    "BATCH_SIZE",
    "CA_EXPIRY_THRESHOLDS",
    "SWEEP_AFTER_SECONDS",
    "CA_EXPIRY_WARNING_DAYS",
    "CN_PLACEHOLDERS",
    "REVOCATION_REASONS",
    "MIN_CA_PASSWORD_LENGTH",
    "BatchResult",
    "BuiltCertificate",
    "CaExpiryNotice",
    "RenewalCheck",
    "ca_active_certificates",
    "ca_archive",
    "ca_expiry_notices",
    "ca_expiry_threshold",
    "ca_expiry_warnings",
    "ca_generate",
    "ca_import_pem",
    "ca_import_pkcs12",
    "ca_retirement_check",
    "cas_with_active_counts",
    "certificate_build",
    "certificate_revoke",
    "certificates_renew_now",
    "certificates_force_renewal",
    "certificate_aws_observed",
    "certificate_connected",
    "certificate_supersede",
    "certificates_revoke",
    "cn_render",
    "cn_template_validate",
    "csr_check",
    "onboarding_request_fetched",
    "onboarding_request_for_station",
    "onboarding_request_submit",
    "onboarding_requests_approve",
    "onboarding_requests_fail",
    "onboarding_requests_reject",
    "onboarding_requests_sign",
    "onboarding_requests_sweep",
    "renewal_check",
    "renewal_proof_check",
    "renewal_proof_message",
    "renewals_check",
    "revocation_reason_parse",
    "signing_profile_create",
    "signing_profile_for_device",
    "signing_profile_save",
    "signing_profile_validate",
    "signing_profiles_switch_ca",
]
