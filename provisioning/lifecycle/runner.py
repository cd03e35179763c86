"""Carrying out the AWS action outbox: claim due rows, pace the calls, record each outcome.

Safe under two workers and under a crash:
- a row is claimed by a conditional UPDATE (PENDING -> RUNNING), so two runners never take
  the same row; on PostgreSQL one runner at a time holds an advisory lock, which makes the
  call rate (``AWS_ACTION_RATE``) a rate for the whole portal, not per worker;
- a worker that dies leaves its row RUNNING; after ``AWS_ACTION_STALE_SECONDS`` the next run
  puts it back to PENDING, and every operation is idempotent (it reads AWS's state first or
  treats "already so" and "not found" as done), so carrying it out twice is harmless.

Throttling, 5xx answers and connection errors (after botocore's own retries) put the row
back with exponential backoff; other errors fail it with AWS's sentence.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import connection
from django.utils import timezone

from ..aws import AwsError, aws_calls_for_action, aws_client
from ..jitp.services import jitp_settings_get
from .models import AwsAction
from .operations import OPERATIONS, Aws

logger = logging.getLogger(__name__)
Status = AwsAction.Status

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailureException",
        "InternalFailure",
        "InternalException",
        "InternalServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        # The state AWS needs is still on its way (a deactivation or detach queued before).
        "CertificateStateException",
        "DeleteConflictException",
        # A device's first connection may still be in JITP's drop and reconnect.
        "CertificatePendingActivation",
        # The portal's own: nothing can leave until staff fix it, which they may do any time.
        "AwsServiceDisabled",
        "AccessKeyPurged",
        "NoAccessKey",
    }
)
_ADVISORY_KEY = 0x5F0A_C710  # any constant; one per kind of runner
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 600


@dataclass
class RunResult:
    done: int = 0
    retried: int = 0
    failed: int = 0
    reclaimed: int = 0
    skipped_locked: bool = False
    calls: int = 0
    ids: list[int] = field(default_factory=list)


class Pacer:
    """At most ``rate`` calls per second: sleeps before a call that would go too soon."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = 0.0
        self.calls = 0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval
        self.calls += 1


@contextlib.contextmanager
def advisory_lock(key: int) -> Iterator[bool]:
    """True when this process holds the PostgreSQL session advisory lock ``key`` (always
    True on other databases); released on exit."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _one_runner() -> contextlib.AbstractContextManager[bool]:
    """True when this process may run (PostgreSQL: a session advisory lock; else always)."""
    return advisory_lock(_ADVISORY_KEY)


def _reclaim_stale(now: datetime) -> int:
    cutoff = now - timedelta(seconds=settings.AWS_ACTION_STALE_SECONDS)
    return AwsAction.objects.filter(status=Status.RUNNING, started_at__lt=cutoff).update(
        status=Status.PENDING, not_before=now
    )


def _backoff(attempts: int) -> timedelta:
    seconds = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def _error_code(exc: Exception) -> tuple[str, bool, str]:
    """(code, retryable, sentence) of an exception raised while carrying out an action."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = str(error.get("Message", "")) or code
        return code, code in RETRYABLE_CODES or status >= 500, f"AWS answered {code}: {message}"
    if isinstance(exc, AwsError):
        return exc.code, exc.code in RETRYABLE_CODES, exc.detail
    if isinstance(exc, BotoCoreError):
        return type(exc).__name__, True, f"AWS could not be reached ({type(exc).__name__})."
    return type(exc).__name__, False, f"The action failed ({type(exc).__name__})."


def _aws() -> tuple[object, str]:
    row = jitp_settings_get()
    if row.access_key is None:
        raise AwsError(
            "No access key is set in the JITP settings; the portal cannot reach AWS.",
            code="NoAccessKey",
        )
    region = row.region or ""
    return aws_client("iot", access_key=row.access_key, region=region or None), region


def error_sentence(exc: Exception) -> str:
    """The sentence an action (or the audit) records for ``exc``."""
    return _error_code(exc)[2]


def iot_client() -> tuple[object, str]:
    """The IoT client (and region) of the JITP settings' access key; raises AwsError."""
    return _aws()


def aws_actions_run(*, limit: int = 500, budget_seconds: float = 50.0) -> RunResult:
    """Carry out due actions (oldest first) until none is due, ``limit`` or the time budget."""
    result = RunResult()
    deadline = time.monotonic() + budget_seconds
    with _one_runner() as may_run:
        if not may_run:
            result.skipped_locked = True
            return result
        now = timezone.now()
        result.reclaimed = _reclaim_stale(now)
        pacer = Pacer(settings.AWS_ACTION_RATE)
        iot: object | None = None
        while len(result.ids) < limit and time.monotonic() < deadline:
            now = timezone.now()
            row = (
                AwsAction.objects.filter(status=Status.PENDING, not_before__lte=now)
                .order_by("not_before", "id")
                .first()
            )
            if row is None:
                break
            if not AwsAction.objects.filter(pk=row.pk, status=Status.PENDING).update(
                status=Status.RUNNING, started_at=now, attempts=row.attempts + 1
            ):
                continue  # another runner took it
            row.attempts += 1
            result.ids.append(row.pk)
            try:
                if iot is None:
                    iot, _ = _aws()
                with aws_calls_for_action(row.pk):
                    OPERATIONS[row.kind](Aws(iot, pacer), row)
            except Exception as exc:  # every failure is recorded on the row, never lost
                code, retryable, sentence = _error_code(exc)
                if code in ("AwsServiceDisabled", "AccessKeyPurged", "NoAccessKey"):
                    iot = None
                _record_failure(row, code, retryable, sentence, result)
                continue
            AwsAction.objects.filter(pk=row.pk, status=Status.RUNNING).update(
                status=Status.DONE, finished_at=timezone.now(), last_error=""
            )
            result.done += 1
        result.calls = pacer.calls
    return result


def _record_failure(
    row: AwsAction, code: str, retryable: bool, sentence: str, result: RunResult
) -> None:
    now = timezone.now()
    exhausted = row.attempts >= settings.AWS_ACTION_MAX_ATTEMPTS
    if retryable and not exhausted:
        AwsAction.objects.filter(pk=row.pk, status=Status.RUNNING).update(
            status=Status.PENDING,
            not_before=now + _backoff(row.attempts),
            last_error=sentence[:500],
        )
        result.retried += 1
        logger.info("AWS action %s (%s) will be retried: %s", row.pk, row.kind, code)
        return
    if retryable:
        sentence = f"Gave up after {row.attempts} attempts. {sentence}"
    AwsAction.objects.filter(pk=row.pk, status=Status.RUNNING).update(
        status=Status.FAILED, finished_at=now, last_error=sentence[:500]
    )
    result.failed += 1
    logger.warning("AWS action %s (%s) failed: %s", row.pk, row.kind, code)
