"""The signing app's refusals: one named domain error per stable code.

Each is a subclass of the kind in :mod:`portal.errors` that gives its HTTP status (the API's
DomainError handler answers ``{"code", "detail"}``), so the codes below are what stations see.
"""

from __future__ import annotations

from portal.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, TooLarge


class CsrError(InvalidInput, ValueError):
    """A CSR the portal will not sign; ``code`` is stable, the message is a sentence (422)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail, code=code)


class CsrTooLarge(CsrError, TooLarge):
    """A CSR larger than the portal reads (413)."""


class WrongCaPassword(InvalidInput, ValueError):
    """The password does not unlock the CA's private key."""

    code = "wrong_ca_password"

    def __init__(self, alias: str) -> None:
        super().__init__(f"The password for CA '{alias}' is wrong.")


class KeyStoreUnavailable(InvalidInput):
    """The HSM holding a CA key cannot be used (module, token, PIN or key missing)."""

    code = "key_store_unavailable"


class InvalidDeviceName(InvalidInput):
    code = "invalid_device_name"


class CommentTooLong(InvalidInput):
    code = "comment_too_long"


class NoSigningProfile(InvalidInput):
    code = "no_signing_profile"


class CommonNameTooLong(InvalidInput):
    code = "common_name_too_long"


class PublicKeyInUse(InvalidInput):
    code = "public_key_in_use"


class CommonNameInUse(InvalidInput):
    code = "common_name_in_use"


class RenewalWithoutCertificate(InvalidInput):
    code = "renewal_without_certificate"


class CertificateExpired(InvalidInput):
    code = "certificate_expired"


class RenewalInProgress(Conflict):
    """A renewal of the device is already waiting for approval or signing (409)."""

    code = "renewal_in_progress"


class InvalidRevocationReason(InvalidInput):
    """Not an RFC 5280 reason the portal accepts, or a comment too long (422)."""

    code = "invalid_revocation_reason"


class CertificateRevoked(Forbidden):
    code = "certificate_revoked"


class RateLimitedSubmissions(RateLimited):
    code = "rate_limited"


class TooManyPendingRequests(RateLimited):
    """The station has as many requests waiting for approval as it may (429)."""

    code = "too_many_pending_requests"


class RequestNotFound(NotFound):
    code = "not_found"


class CaStillInUse(Conflict):
    """A CA cannot be retired while certificates or signing profiles depend on it."""

    code = "ca_still_in_use"


class CaArchived(InvalidInput):
    """An archived (retired) CA signs nothing more and cannot be chosen again."""

    code = "ca_archived"


class RenewalProofRequired(InvalidInput):
    """A renewal came without a signature by the current certificate's key (422)."""

    code = "proof_required"


class RenewalProofInvalid(InvalidInput):
    """The renewal's proof does not verify with the current certificate's key (422)."""

    code = "proof_invalid"


class RenewalTooEarly(Conflict):
    """The current certificate has not reached its renewal point (409)."""

    code = "renewal_too_early"
