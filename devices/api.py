"""The devices app's part of the station API: exchanging an enrolment code for the token.

``POST /api/v1/enrollment`` needs no token (the code is the credential); refusals are the
enrolment services' named errors, answered by the API's DomainError handler.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Field, Router, Schema

from portal.http_api import ErrorOut

from .enrollment import enrollment_redeem

router = Router(tags=["enrollment"])


class EnrollmentIn(Schema):
    code: str = Field(..., min_length=1, max_length=64)


class EnrollmentOut(Schema):
    token: str
    station: str


@router.post(
    "/enrollment",
    auth=None,
    response={200: EnrollmentOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    summary="Exchange a one-time enrolment code for the station's API token",
)
def enroll(request: HttpRequest, payload: EnrollmentIn, response: HttpResponse) -> dict[str, str]:
    station, token = enrollment_redeem(
        code=payload.code, address=request.META.get("REMOTE_ADDR") or None
    )
    response["Cache-Control"] = "no-store"
    return {"token": token, "station": station.name}
