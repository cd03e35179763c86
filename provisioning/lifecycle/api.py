"""Staff API of the certificate life cycle: revoke a certificate in the portal and in AWS.

``POST /api/v1/certificates/{serial}/revoke`` with ``{"reason": "<RFC 5280 name>",
"comment": "…"}``; a staff token whose user holds ``signing.revoke_issuedcertificate``.
It answers 202 with the AWS actions carrying the revocation out (docs/lifecycle.md).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from portal.errors import Forbidden
from portal.http_api import ErrorOut, StaffTokenAuth

from .revocation import certificates_for_revocation, certificates_revoke_in_aws

router = Router(tags=["certificates"])


class RevokeIn(Schema):
    reason: str = Field(..., max_length=64, description="RFC 5280 reason, e.g. keyCompromise.")
    comment: str = Field("", max_length=200)


class ActionOut(Schema):
    id: int
    kind: str
    status: str


class RevokeOut(Schema):
    serial: str
    status: str
    reason: str
    revoked_at: str | None
    already_revoked: bool
    actions: list[ActionOut]


class RevocationNotAllowed(Forbidden):
    code = "permission_denied"


@router.post(
    "/certificates/{serial}/revoke",
    auth=StaffTokenAuth(),
    response={202: RevokeOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
)
def revoke_certificate(request: HttpRequest, serial: str, payload: RevokeIn) -> Status:
    user: Any = request.auth  # type: ignore[attr-defined]
    if not user.has_perm("signing.revoke_issuedcertificate"):
        raise RevocationNotAllowed(
            "Revoking needs the permission signing.revoke_issuedcertificate."
        )
    certificates = certificates_for_revocation(serials=[serial])
    result = certificates_revoke_in_aws(
        certificates=certificates, reason=payload.reason, comment=payload.comment, actor=user
    )
    cert = result.certificates[0]
    cert.refresh_from_db()
    return Status(
        202,
        {
            "serial": cert.serial,
            "status": cert.status,
            "reason": cert.revocation_reason,
            "revoked_at": cert.revoked_at.isoformat() if cert.revoked_at else None,
            "already_revoked": bool(result.already),
            "actions": [{"id": a.pk, "kind": a.kind, "status": a.status} for a in result.actions],
        },
    )
