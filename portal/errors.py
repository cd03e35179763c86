"""Domain errors: what a service refuses, as a stable code and one sentence.

Services raise these and nothing else for a refusal; each door translates them in one place:
the API to a status and ``{"code", "detail"}`` (``portal.api``), the admin to a message or a
form error, a management command to a non-zero exit with the sentence
(``portal.commands.PortalCommand``). An app subclasses the kind that fits and sets its own
``code``, e.g. ``class CertificateRevoked(Forbidden): code = "certificate_revoked"``.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal a person can act on. ``detail`` is a full sentence and never holds a secret."""

    code: str = "invalid_request"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.detail


class InvalidInput(DomainError):
    """The input is understood but not acceptable (an API answers 422)."""

    code = "invalid_request"


class NotFound(DomainError):
    """The thing asked for does not exist, or not for this caller (404)."""

    code = "not_found"


class Conflict(DomainError):
    """The request contradicts the current state (409)."""

    code = "conflict"


class Forbidden(DomainError):
    """The caller may not do this (403)."""

    code = "forbidden"


class TooLarge(DomainError):
    """The input is larger than the portal accepts (413)."""

    code = "too_large"


class RateLimited(DomainError):
    """Too many requests; ``retry_after`` seconds tells when to try again (429)."""

    code = "rate_limited"

    def __init__(
        self, detail: str, *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A service the work needs is not reachable now; the same request may succeed later (503)."""

    code = "unavailable"
