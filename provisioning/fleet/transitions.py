"""Moves of one fleet-install row along FleetInstallStation.TRANSITIONS, the locks they take,
and the moves an onboarding request calls for.

Lock order everywhere: job, then rows, then devices.
"""

from __future__ import annotations

from django.utils import timezone

from signing.models import OnboardingRequest

from ..jobs.models import Job, JobLogLine
from ..jobs.services import job_log, job_progress
from .models import FleetInstallStation

Row = FleetInstallStation
S = FleetInstallStation.Status
# Forward order of the progress states; reports never move a row backwards.
RANK: dict[str, int] = {
    S.QUEUED: 0,
    S.DELIVERED: 1,
    S.ONBOARDING: 2,
    S.AWAITING_APPROVAL: 3,
    S.CONNECTED: 4,
}


def row_move(
    row: Row, status: str, *, by: str = "system", note: str | None = None, error: str | None = None
) -> bool:
    """Move one (locked) row along FleetInstallStation.TRANSITIONS; keeps the job's
    done/failed counters in step. False when the table does not allow the move."""
    if row.status == status or not row.can_move_to(status):
        return False
    old = row.status
    now = timezone.now()
    row.status = status
    row.status_changed_at = now
    row.status_changed_by = by[:150]
    if note is not None:
        row.note = note[:300]
    if error is not None:
        row.last_error = error[:500]
    if status in (S.DELIVERED, S.ONBOARDING, S.AWAITING_APPROVAL, S.CONNECTED):
        row.delivered_at = row.delivered_at or now
    if status == S.CONNECTED:
        row.connected_at = now
    if status in Row.TERMINAL:
        row.finished_at = now
    if status == S.QUEUED:
        row.finished_at = None
        row.dispatched_at = None
    row.full_clean()
    # The statement enforces the table: it only moves a row whose stored status may go there.
    values = {
        f.attname: getattr(row, f.attname) for f in Row._meta.concrete_fields if not f.primary_key
    }
    if not Row.objects.filter(pk=row.pk, status__in=Row.sources_of(status)).update(**values):
        row.refresh_from_db()
        return False
    job = row.install.job
    done = 1 if status == S.CONNECTED else 0
    failed = (1 if status in (S.FAILED, S.CANCELLED) else 0) - (1 if old == S.FAILED else 0)
    if done or failed:
        job_progress(job=job, done=done, failed=failed)
    level = JobLogLine.Level.WARNING if status in (S.FAILED, S.CANCELLED) else JobLogLine.Level.INFO
    tail = f": {error}" if error else (f": {note}" if note else ".")
    job_log(
        job=job,
        level=level,
        message=f"{row.station.name}: {Row.Status(old).label} -> {Row.Status(status).label}{tail}",
    )
    return True


def job_lock(job_id: int) -> None:
    """Lock a job row against other fleet moves.

    FOR NO KEY UPDATE (on PostgreSQL): it still serialises the moves that change the job's
    counters or status, but not the log lines other transactions insert for the job (their
    foreign key takes FOR KEY SHARE, which FOR UPDATE would block).
    """
    list(Job.objects.select_for_update(no_key=True).filter(pk=job_id).values_list("pk", flat=True))


def row_lock(row_id: int, *, lock_job: bool = True) -> Row:
    """Lock a row for a move. Lock order everywhere: job, then rows, then devices; so the
    row's job is locked first when its counters change with the row.

    ``lock_job=False`` for moves between the in-flight states (queued, delivered,
    onboarding, awaiting approval), which change no counter: such a transaction then takes
    no job lock at all (nor waits for one), so it cannot join a lock cycle, and a thousand
    stations fetching their configuration do not queue up behind one job row.
    """
    job_id = Row.objects.filter(pk=row_id).values_list("install__job_id", flat=True).get()
    if lock_job:
        job_lock(job_id)
    return (
        Row.objects.select_for_update(of=("self",))
        .select_related("install__job", "station", "device")
        .defer("install__plan")
        .get(pk=row_id)
    )


def move_from_request(row: Row) -> tuple[str, dict[str, str]] | None:
    """The move the device's onboarding request (made since placement) calls for, if any."""
    if row.device_id is None or row.dispatched_at is None or row.status in Row.TERMINAL:
        return None
    request = (
        OnboardingRequest.objects.filter(
            device_id=row.device_id, is_renewal=False, created_at__gte=row.dispatched_at
        )
        .order_by("-created_at", "-id")
        .only("pk", "status", "reason")
        .first()
    )
    if request is None:
        return None
    status = request.status
    if status in (OnboardingRequest.Status.PENDING, OnboardingRequest.Status.APPROVED):
        if RANK.get(row.status, 9) < RANK[S.AWAITING_APPROVAL]:
            return S.AWAITING_APPROVAL, {"note": f"Onboarding request #{request.pk}."}
    elif status == OnboardingRequest.Status.REJECTED:
        return S.FAILED, {
            "error": f"Onboarding request #{request.pk} was rejected"
            + (f": {request.reason}" if request.reason else ".")
        }
    elif status == OnboardingRequest.Status.FAILED:
        return S.FAILED, {
            "error": f"Signing onboarding request #{request.pk} failed"
            + (f": {request.reason}" if request.reason else ".")
        }
    return None


def row_follow_request(row: Row) -> bool:
    """Follow the device's onboarding request made since the device was placed."""
    move = move_from_request(row)
    return move is not None and row_move(row, move[0], **move[1])
