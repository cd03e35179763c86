"""Enrolment codes: staff make a short one-time code per station, the station's agent
exchanges it once for the station's API token (POST /api/v1/enrollment).

A code is 12 characters from an alphabet without look-alikes (no 0/O, 1/I/L), about 60 bits,
shown as ``XXXX-XXXX-XXXX``; only its SHA-256 is stored, so a lookup compares hashes and the
time it takes says nothing about how much of a guess was right. The exchange consumes the
code with one conditional UPDATE (two concurrent uses: one wins) and gives the station a
new token. Failed exchanges are counted per client address and in all, and refused beyond
the limits, so guessing is slow.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.errors import Conflict, InvalidInput, NotFound, RateLimited
from portal.services import Actor, acting_user, audit_record

from .models import EnrollmentAttempt, EnrollmentCode, Station
from .services import station_rotate_token

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12


class EnrollmentCodeUnknown(NotFound):
    code = "enrollment_code_invalid"


class EnrollmentCodeUsed(Conflict):
    code = "enrollment_code_used"


class EnrollmentCodeExpired(Conflict):
    code = "enrollment_code_expired"


class EnrollmentCodeMalformed(InvalidInput):
    code = "enrollment_code_invalid"


class EnrollmentRateLimited(RateLimited):
    code = "enrollment_rate_limited"


def code_normalise(code: str) -> str:
    """Upper case without separators; what people type with dashes or spaces is the same code."""
    return "".join(ch for ch in code.upper() if ch not in " -_\t")


def code_hash(code: str) -> str:
    return hashlib.sha256(code_normalise(code).encode()).hexdigest()


def code_format(raw: str) -> str:
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


@transaction.atomic
def enrollment_code_create(*, station: Station, actor: Actor = None, actor_label: str = "") -> str:
    """A new code for ``station`` (its earlier unused codes end); returned this once only."""
    now = timezone.now()
    EnrollmentCode.objects.filter(station=station, used_at__isnull=True, expires_at__gt=now).update(
        expires_at=now
    )
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    days = int(getattr(settings, "ENROLLMENT_CODE_TTL_DAYS", 7))
    user = acting_user(actor)
    user_label = user.get_username() if user is not None else ""
    row = EnrollmentCode.objects.create(
        station=station,
        code_hash=code_hash(raw),
        created_at=now,
        expires_at=now + timedelta(days=days),
        created_by_label=(actor_label or user_label)[:150],
    )
    audit_record(
        action="enrollment_code_create",
        obj=station,
        actor=actor,
        actor_label=actor_label,
        detail={"expires_at": row.expires_at.isoformat()},
    )
    return code_format(raw)


def _rate_check(address: str | None) -> None:
    window = int(getattr(settings, "ENROLLMENT_RATE_WINDOW", 600))
    since = timezone.now() - timedelta(seconds=window)
    recent = EnrollmentAttempt.objects.filter(at__gte=since)
    per_address = int(getattr(settings, "ENROLLMENT_RATE_PER_ADDRESS", 10))
    overall = int(getattr(settings, "ENROLLMENT_RATE_GLOBAL", 300))
    if address is not None and recent.filter(address=address).count() >= per_address:
        raise EnrollmentRateLimited(
            "Too many wrong enrolment codes from this address; try again later.",
            retry_after=window,
        )
    if recent.count() >= overall:
        raise EnrollmentRateLimited(
            "Too many wrong enrolment codes; try again later.", retry_after=window
        )


def _record_failure(address: str | None) -> None:
    window = int(getattr(settings, "ENROLLMENT_RATE_WINDOW", 600))
    now = timezone.now()
    # Outside the caller's transaction on purpose: the refusal must still count.
    EnrollmentAttempt.objects.filter(at__lt=now - timedelta(seconds=window)).delete()
    EnrollmentAttempt.objects.create(at=now, address=address)


def enrollment_redeem(*, code: str, address: str | None) -> tuple[Station, str]:
    """Exchange a code for ``(station, new token)``; refusals are named domain errors."""
    _rate_check(address)
    normal = code_normalise(code)
    if len(normal) != CODE_LENGTH or any(ch not in ALPHABET for ch in normal):
        _record_failure(address)
        raise EnrollmentCodeMalformed(
            f"An enrolment code is {CODE_LENGTH} letters and digits, e.g. ABCD-EFGH-JKMN; "
            "check what you typed."
        )
    try:
        return _redeem(code_hash(normal), address)
    except (EnrollmentCodeUnknown, EnrollmentCodeUsed, EnrollmentCodeExpired):
        _record_failure(address)
        raise


@transaction.atomic
def _redeem(digest: str, address: str | None) -> tuple[Station, str]:
    now = timezone.now()
    won = EnrollmentCode.objects.filter(
        code_hash=digest, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now, used_from=address)
    row = EnrollmentCode.objects.select_related("station").filter(code_hash=digest).first()
    if row is None:
        raise EnrollmentCodeUnknown("This enrolment code is not known to the portal.")
    if not won:
        if row.used_at is not None:
            raise EnrollmentCodeUsed(
                "This enrolment code was already used; ask staff for a new one."
            )
        raise EnrollmentCodeExpired("This enrolment code has expired; ask staff for a new one.")
    station = row.station
    token = station_rotate_token(station=station, actor=None)
    audit_record(
        action="station_enroll",
        obj=station,
        actor_label=f"station {station.name}",
        detail={"from": address or ""},
    )
    return station, token
