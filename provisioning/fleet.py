"""Fleet install: put the same MQTT device on many stations and follow each one to "connected".

A fleet install is a Job row plus one FleetInstall (its parameters) and one FleetInstallStation
per station. Nothing reaches into a station: "installing" means placing the device in the
station's desired configuration (GET /agent/config); the agent does the rest and its state
reports, together with the device's onboarding request, move each row along
FleetInstallStation.TRANSITIONS.

Dispatch rules: a row is placed only when its station is online (reported within
STATION_ONLINE_SECONDS), and at most ``concurrency`` placed rows may be between placement and
CSR submission (queued/delivered/onboarding) at once; offline stations stay queued until they
report or the job timeout passes. Re-runs are safe: devices are found by (station, name), a
connected device is skipped untouched (no second certificate), an existing device keeps its
certificate password once it holds a certificate.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.models import MqttDevice, Station, name_validator
from devices.station_selectors import station_online_since
from portal.services import audit_record
from signing.models import OnboardingRequest, SigningProfile

from .jobs import job_create, job_finish, job_log, job_progress, job_start
from .models import FleetInstall, FleetInstallStation, Job, JobLogLine

Row = FleetInstallStation
S = FleetInstallStation.Status
MIN_CERT_PASSWORD_LENGTH = 8
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*\.?$"
)
# Forward order of the progress states; reports never move a row backwards.
_RANK: dict[str, int] = {S.QUEUED: 0, S.DELIVERED: 1, S.ONBOARDING: 2, S.AWAITING_APPROVAL: 3,
                         S.CONNECTED: 4}
_FROM_AGENT = {
    "installed": S.DELIVERED,
    "onboarding": S.ONBOARDING,
    "awaiting_approval": S.AWAITING_APPROVAL,
    "certificate_issued": S.ONBOARDING,
    "connected": S.CONNECTED,
}

Actor = AbstractBaseUser | AnonymousUser | None


def _actor_label(actor: Actor) -> str:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return actor.get_username()
    return "system"


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PlanEntry:
    """What a fleet install would do on one station."""

    station: str
    action: str  # create | update | nothing | skip
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"station": self.station, "action": self.action, "detail": self.detail}


def fleet_install_plan(
    *, stations: Iterable[Station], device_name: str, endpoint: str, port: int,
    profile: SigningProfile,
) -> list[PlanEntry]:
    """Per station: create the device, update it, leave it, or skip it (already connected)."""
    stations = list(stations)
    existing = {
        d.station_id: d
        for d in MqttDevice.objects.filter(station__in=stations, name=device_name)
    }
    plan = []
    for station in stations:
        device = existing.get(station.pk)
        if device is None:
            plan.append(PlanEntry(station.name, "create",
                                  f"Create device '{device_name}' for {endpoint}:{port} "
                                  f"(profile {profile.name})."))
        elif device.status == MqttDevice.Status.CONNECTED:
            plan.append(PlanEntry(station.name, "skip",
                                  "Already connected; nothing changes (no second certificate)."))
        else:
            changes = []
            if (device.endpoint, device.port) != (endpoint, port):
                changes.append(f"endpoint {device.endpoint or '(none)'}:{device.port} -> "
                               f"{endpoint}:{port}")
            if device.signing_profile_id != profile.pk:
                changes.append(f"profile -> {profile.name}")
            if changes:
                plan.append(PlanEntry(station.name, "update",
                                      "Update device '" + device_name + "': "
                                      + "; ".join(changes) + "."))
            else:
                plan.append(PlanEntry(station.name, "nothing",
                                      f"Device already configured ({device.get_status_display()});"
                                      " nothing changes."))
    return plan


def plan_summary(plan: list[dict[str, str]]) -> str:
    counts = {a: sum(1 for p in plan if p["action"] == a)
              for a in ("create", "update", "nothing", "skip")}
    return (f"{counts['create']} to create, {counts['update']} to update, "
            f"{counts['nothing']} unchanged, {counts['skip']} already connected")


# --------------------------------------------------------------------------- create / start


def _resolve_stations(
    stations: Iterable[Station | str] | None, all_stations: bool
) -> tuple[list[Station], list[str]]:
    if all_stations:
        return list(Station.objects.order_by("name")), []
    objs = [s for s in (stations or []) if isinstance(s, Station)]
    names = sorted({str(s).strip() for s in (stations or []) if not isinstance(s, Station)} - {""})
    found = {s.name: s for s in Station.objects.filter(name__in=names)}
    unknown = [n for n in names if n not in found]
    result = {s.pk: s for s in [*objs, *found.values()]}
    return sorted(result.values(), key=lambda s: s.name), unknown


@transaction.atomic
def fleet_install_create(
    *,
    device_name: str,
    profile: SigningProfile | str | None,
    endpoint: str,
    port: int = 8883,
    key_password: str = "",
    comment: str = "",
    stations: Iterable[Station | str] | None = None,
    all_stations: bool = False,
    concurrency: int | None = None,
    timeout: timedelta | None = None,
    dry_run: bool = False,
    actor: Actor = None,
) -> FleetInstall:
    """Validate and record a fleet install (job + one row per station); a dry run only plans.

    Raises ValidationError (per field) for unknown or no stations, a bad device name, a
    missing endpoint, an unknown profile or a short certificate password. A dry run stores
    the plan on the finished job and never stores the password.
    """
    errors: dict[str, list[str]] = {}
    station_objs, unknown = _resolve_stations(stations, all_stations)
    if unknown:
        errors.setdefault("stations", []).append(
            f"Unknown station(s): {', '.join(unknown)}.")
    elif not station_objs:
        errors.setdefault("stations", []).append(
            "Select at least one station." if not all_stations else "There are no stations.")
    device_name = (device_name or "").strip()
    try:
        name_validator(device_name)
    except ValidationError as exc:
        errors.setdefault("device_name", []).append(
            "The device name is required." if not device_name else " ".join(exc.messages))
    endpoint = (endpoint or "").strip()
    if not endpoint:
        errors.setdefault("endpoint", []).append("A broker endpoint is required.")
    elif not _HOSTNAME.match(endpoint):
        errors.setdefault("endpoint", []).append(
            "The broker endpoint must be a host name such as "
            "abc123-ats.iot.eu-west-1.amazonaws.com (no scheme, no port).")
    if not 1 <= int(port) <= 65535:
        errors.setdefault("port", []).append("The port must be between 1 and 65535.")
    profile_obj: SigningProfile | None
    if isinstance(profile, SigningProfile):
        profile_obj = profile
    else:
        profile_obj = SigningProfile.objects.filter(name=(profile or "").strip()).first()
        if profile_obj is None:
            errors.setdefault("profile", []).append(
                f"There is no signing profile named '{profile}'." if profile
                else "A signing profile is required.")
    if not dry_run and len(key_password or "") < MIN_CERT_PASSWORD_LENGTH:
        errors.setdefault("key_password", []).append(
            f"The certificate password must be at least {MIN_CERT_PASSWORD_LENGTH} characters.")
    concurrency = settings.FLEET_INSTALL_DEFAULT_CONCURRENCY if concurrency is None else concurrency
    if concurrency < 1:
        errors.setdefault("concurrency", []).append("The concurrency cap must be at least 1.")
    timeout = timeout or timedelta(hours=settings.FLEET_INSTALL_DEFAULT_TIMEOUT_HOURS)
    if timeout <= timedelta(0):
        errors.setdefault("timeout", []).append("The timeout must be positive.")
    if errors:
        raise ValidationError(errors)
    assert profile_obj is not None

    plan = [p.as_dict() for p in fleet_install_plan(
        stations=station_objs, device_name=device_name, endpoint=endpoint, port=int(port),
        profile=profile_obj)]
    title = (f"{'Dry run: install' if dry_run else 'Install'} '{device_name}' on "
             f"{len(station_objs)} station(s)")
    # A dry run installs nothing: its progress counters stay at zero (the plan says it all).
    job = job_create(kind=Job.Kind.FLEET_INSTALL, title=title, actor=actor,
                     total=0 if dry_run else len(station_objs))
    install = FleetInstall(
        job=job, device_name=device_name, signing_profile=profile_obj, endpoint=endpoint,
        port=int(port), key_password="" if dry_run else key_password,
        onboarding_comment=comment, concurrency=concurrency, timeout=timeout, dry_run=dry_run,
        plan=plan,
    )
    install.full_clean()
    install.save()
    audit_record(action="fleet_install_create", obj=install, actor=actor,
                 detail={"stations": len(station_objs), "dry_run": dry_run,
                         "device": device_name, "endpoint": endpoint})
    if dry_run:
        job_start(job=job)
        for entry in plan:
            job_log(job=job, message=f"{entry['station']}: {entry['action']}: {entry['detail']}")
        job_finish(job=job, status=Job.Status.SUCCEEDED,
                   result=f"Dry run, nothing changed: {plan_summary(plan)}.")
        install.job.refresh_from_db()
        return install
    now = timezone.now()
    by_name = {p["station"]: p for p in plan}
    rows = []
    skipped = 0
    for station in station_objs:
        if by_name[station.name]["action"] == "skip":
            skipped += 1
            rows.append(Row(install=install, station=station, status=S.CONNECTED,
                            note="Already connected; skipped (no second certificate).",
                            device=MqttDevice.objects.get(station=station, name=device_name),
                            connected_at=now, finished_at=now, status_changed_by="system"))
        else:
            rows.append(Row(install=install, station=station))
    Row.objects.bulk_create(rows)
    if skipped:
        job_progress(job=job, done=skipped)
    return install


def fleet_install_start(*, install: FleetInstall) -> None:
    """Start the install's task once the rows are committed (queue ``fleet``)."""
    if install.dry_run:
        raise ValidationError("A dry run cannot be started; create the install without dry run.")
    from .tasks import fleet_install_run

    install_id = install.pk
    transaction.on_commit(lambda: fleet_install_run.delay(install_id))


def fleet_install_run(*, install_id: int) -> int:
    """The task body: mark the job running, place devices up to the cap, settle what can be."""
    install = FleetInstall.objects.select_related("job").filter(pk=install_id).first()
    if install is None or install.dry_run or install.job.is_finished:
        return 0
    if install.job.status == Job.Status.QUEUED and job_start(job=install.job):
        job_log(job=install.job, message=(
            f"Started: device '{install.device_name}' to {install.endpoint}:{install.port}, "
            f"at most {install.concurrency} station(s) in flight, timeout {install.timeout}."))
    placed = fleet_install_dispatch(install=install)
    _finish_if_complete(install)
    return placed


# --------------------------------------------------------------------------- transitions


def _transition(row: Row, status: str, *, by: str = "system", note: str | None = None,
                error: str | None = None) -> bool:
    """Move one (locked) row; keeps the job's done/failed counters in step."""
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
    row.save()
    job = row.install.job
    done = 1 if status == S.CONNECTED else 0
    failed = (1 if status in (S.FAILED, S.CANCELLED) else 0) - (1 if old == S.FAILED else 0)
    if done or failed:
        job_progress(job=job, done=done, failed=failed)
    level = JobLogLine.Level.WARNING if status in (S.FAILED, S.CANCELLED) else JobLogLine.Level.INFO
    tail = f": {error}" if error else (f": {note}" if note else ".")
    job_log(job=job, level=level,
            message=f"{row.station.name}: {Row.Status(old).label} -> "
                    f"{Row.Status(status).label}{tail}")
    return True


def _lock_job(job_id: int) -> None:
    """Lock a job row against other fleet moves.

    FOR NO KEY UPDATE (on PostgreSQL): it still serialises the moves that change the job's
    counters or status, but not the log lines other transactions insert for the job (their
    foreign key takes FOR KEY SHARE, which FOR UPDATE would block).
    """
    list(Job.objects.select_for_update(no_key=True).filter(pk=job_id).values_list("pk",
                                                                                   flat=True))


def _locked(row_id: int, *, lock_job: bool = True) -> Row:
    """Lock a row for a move. Lock order everywhere: job, then rows, then devices; so the
    row's job is locked first when its counters change with the row.

    ``lock_job=False`` for moves between the in-flight states (queued, delivered,
    onboarding, awaiting approval), which change no counter: such a transaction then takes
    no job lock at all (nor waits for one), so it cannot join a lock cycle, and a thousand
    stations fetching their configuration do not queue up behind one job row.
    """
    job_id = Row.objects.filter(pk=row_id).values_list("install__job_id", flat=True).get()
    if lock_job:
        _lock_job(job_id)
    return (Row.objects.select_for_update(of=("self",))
            .select_related("install__job", "station", "device")
            .get(pk=row_id))


def _place_row(row: Row, install: FleetInstall) -> None:
    """Create or update the station's device so it appears in the station's /agent/config."""
    device, created = MqttDevice.objects.select_for_update().get_or_create(
        station=row.station, name=install.device_name,
        defaults={"endpoint": install.endpoint, "port": install.port,
                  "signing_profile": install.signing_profile,
                  "key_password": install.key_password,
                  "onboarding_comment": install.onboarding_comment,
                  "status": MqttDevice.Status.PENDING_INSTALL},
    )
    row.device = device
    row.created_device = row.created_device or created
    row.attempts += 1
    row.dispatched_at = timezone.now()
    if device.status == MqttDevice.Status.CONNECTED:
        row.save()
        _transition(row, S.CONNECTED, note="Already connected; skipped (no second certificate).")
        return
    if not created:
        device.endpoint, device.port = install.endpoint, install.port
        device.signing_profile = install.signing_profile
        device.onboarding_comment = install.onboarding_comment
        fields = ["endpoint", "port", "signing_profile", "onboarding_comment", "updated_at"]
        if device.current_certificate_id is None:
            # Only while no key is in use: the station encrypts the key with this password.
            device.key_password = install.key_password
            fields.append("key_password")
        device.full_clean()
        device.save(update_fields=fields)
    row.note = ("Device created in the station's desired configuration." if created
                else "Existing device updated in the station's desired configuration.")
    row.save()
    job_log(job=install.job, message=f"{row.station.name}: {row.note}")


@transaction.atomic
def fleet_install_dispatch(*, install: FleetInstall, station: Station | None = None) -> int:
    """Place queued rows of online stations, up to the concurrency cap; returns how many."""
    _lock_job(install.job_id)
    job = Job.objects.get(pk=install.job_id)
    if job.status != Job.Status.RUNNING:
        return 0
    rows = Row.objects.filter(install=install)
    in_flight = rows.filter(dispatched_at__isnull=False, status__in=Row.IN_FLIGHT).count()
    slots = install.concurrency - in_flight
    if slots <= 0:
        return 0
    candidates = rows.filter(status=S.QUEUED, dispatched_at__isnull=True,
                             station__last_seen_at__gte=station_online_since())
    if station is not None:
        candidates = candidates.filter(station=station)
    placed = 0
    for row_id in candidates.order_by("station__name").values_list("pk", flat=True)[:slots]:
        row = _locked(row_id, lock_job=False)  # this transaction holds the job lock
        if row.status != S.QUEUED or row.dispatched_at is not None:
            continue
        _place_row(row, install)
        placed += 1
    return placed


def _request_move(row: Row) -> tuple[str, dict[str, str]] | None:
    """The move the device's onboarding request (made since placement) calls for, if any."""
    if row.device_id is None or row.dispatched_at is None or row.status in Row.TERMINAL:
        return None
    request = (OnboardingRequest.objects.filter(device_id=row.device_id, is_renewal=False,
                                                created_at__gte=row.dispatched_at)
               .order_by("-created_at", "-id").only("pk", "status", "reason").first())
    if request is None:
        return None
    status = request.status
    if status in (OnboardingRequest.Status.PENDING, OnboardingRequest.Status.APPROVED):
        if _RANK.get(row.status, 9) < _RANK[S.AWAITING_APPROVAL]:
            return S.AWAITING_APPROVAL, {"note": f"Onboarding request #{request.pk}."}
    elif status == OnboardingRequest.Status.REJECTED:
        return S.FAILED, {"error": f"Onboarding request #{request.pk} was rejected"
                          + (f": {request.reason}" if request.reason else ".")}
    elif status == OnboardingRequest.Status.FAILED:
        return S.FAILED, {"error": f"Signing onboarding request #{request.pk} failed"
                          + (f": {request.reason}" if request.reason else ".")}
    return None


def _sync_from_request(row: Row) -> bool:
    """Follow the device's onboarding request made since the device was placed."""
    move = _request_move(row)
    return move is not None and _transition(row, move[0], **move[1])


def _report_move(row: Row, entry: dict[str, Any] | None) -> str | None:
    """What an agent's device entry asks of this row: a status to move to, "error" (record
    the agent's error), or None (nothing to do)."""
    if entry is None:
        return None
    agent_status = entry.get("status", "")
    if agent_status == "error":
        error = (entry.get("last_error") or "The agent reported an error.")[:500]
        return "error" if error != row.last_error else None
    target = _FROM_AGENT.get(agent_status)
    if target is not None and (
        _RANK[target] > _RANK.get(row.status, 9)
        or (agent_status == "certificate_issued" and row.status == S.AWAITING_APPROVAL)
    ):
        return target
    return None


def _running_rows(**filters: Any) -> Any:
    return Row.objects.filter(install__job__status=Job.Status.RUNNING, **filters)


def fleet_config_delivered(*, station: Station, device_names: Iterable[str]) -> int:
    """The agent fetched a config holding these devices: their placed rows are delivered.

    Called on every config poll, so the common case (nothing to move) is one read and no
    transaction (on SQLite a transaction would take the write lock).
    """
    ids = list(_running_rows(station=station, status=S.QUEUED, dispatched_at__isnull=False,
                             install__device_name__in=list(device_names))
               .values_list("pk", flat=True))
    moved = 0
    for row_id in ids:
        with transaction.atomic():
            row = _locked(row_id, lock_job=False)  # queued -> delivered: no counter changes
            if row.status == S.QUEUED and row.dispatched_at is not None:
                moved += _transition(row, S.DELIVERED,
                                     note="The agent fetched the configuration.")
    return moved


def fleet_station_reported(*, station: Station, devices: dict[str, dict[str, Any]]) -> None:
    """A state report arrived: place waiting rows of this (now online) station, then move
    its placed rows along from the agent's per-device status and the onboarding request.

    Most reports change nothing (the agent reports every poll interval): rows are read
    without locks first and only a row that will move takes the locks (job, then row), in
    a transaction of its own. So the reports of a thousand stations do not queue up behind
    one job row; the job is re-dispatched and checked for completion only when a row left
    the in-flight states or finished.
    """
    installs = set(_running_rows(station=station, status=S.QUEUED, dispatched_at__isnull=True)
                   .values_list("install_id", flat=True))
    for install in FleetInstall.objects.filter(pk__in=installs).select_related("job"):
        fleet_install_dispatch(install=install, station=station)
    moved: set[int] = set()
    rows = list(_running_rows(station=station, dispatched_at__isnull=False)
                .exclude(status__in=Row.TERMINAL)
                .select_related("install").only("pk", "status", "last_error", "device_id",
                                                "dispatched_at", "install_id",
                                                "install__device_name"))
    for peek in rows:
        entry = devices.get(peek.install.device_name)
        report_target, request_move = _report_move(peek, entry), _request_move(peek)
        if report_target is None and request_move is None:
            continue
        finishing = report_target in Row.TERMINAL or (
            request_move is not None and request_move[0] in Row.TERMINAL)
        with transaction.atomic():
            # The job is locked (first) only when the row may finish: its counters change.
            row = _locked(peek.pk, lock_job=finishing)
            if row.status in Row.TERMINAL:
                continue
            before = row.status
            target = _report_move(row, entry)
            if not finishing and (target in Row.TERMINAL or (
                    (late := _request_move(row)) is not None and late[0] in Row.TERMINAL)):
                continue  # it became final meanwhile: the next report (or sweep) locks the job
            if target == "error":
                assert entry is not None
                row.last_error = (entry.get("last_error")
                                  or "The agent reported an error.")[:500]
                row.save(update_fields=["last_error"])
            elif target is not None:
                note = "Connected to the broker." if target == S.CONNECTED else None
                if entry is not None and entry.get("status") == "certificate_issued":
                    note = "Certificate issued; connecting."
                _transition(row, target, note=note, error="" if target == S.CONNECTED else None)
            _sync_from_request(row)
            if (before in Row.IN_FLIGHT and row.status not in Row.IN_FLIGHT) \
                    or row.status in Row.TERMINAL:
                moved.add(row.install_id)
    # A row that left the in-flight states may have freed a slot for other (online) stations
    # of the install; a row that finished may have been its last one.
    for install in FleetInstall.objects.filter(pk__in=moved).select_related("job"):
        fleet_install_dispatch(install=install)
        _finish_if_complete(install)


# --------------------------------------------------------------------------- cancel / finish


def _cancel_row(row: Row, actor: Actor) -> None:
    by = _actor_label(actor)
    device = row.device
    note = "Cancelled by staff."
    if device is not None and row.created_device and device.current_certificate_id is None \
            and not device.certificates.exists():
        device.delete()
        row.device = None
        note = "Cancelled; the device was removed from the station's desired configuration."
    elif device is not None:
        note = ("Cancelled; the device was kept (it existed before this install or already "
                "holds a certificate).")
    _transition(row, S.CANCELLED, by=by, note=note)


@transaction.atomic
def fleet_install_station_cancel(*, row: Row, actor: Actor = None) -> Row:
    """Cancel one station of a running install."""
    row = _locked(row.pk)
    if row.status in Row.TERMINAL:
        raise ValidationError(f"Station {row.station.name} is already {row.get_status_display()}"
                              " in this install.")
    _cancel_row(row, actor)
    audit_record(action="fleet_install_station_cancel", obj=row.install, actor=actor,
                 detail={"station": row.station.name})
    _finish_if_complete(row.install)
    return row


@transaction.atomic
def fleet_install_cancel(*, install: FleetInstall, actor: Actor = None) -> FleetInstall:
    """Cancel a whole install: every unfinished station is cancelled, then the job."""
    job = Job.objects.select_for_update().get(pk=install.job_id)
    if job.is_finished:
        raise ValidationError(f"{job} is already {job.get_status_display().lower()}.")
    for row_id in install.stations.exclude(status__in=Row.TERMINAL).values_list("pk", flat=True):
        _cancel_row(_locked(row_id), actor)
    counts = _counts(install)
    job_finish(job=job, status=Job.Status.CANCELLED,
               result=f"Cancelled by {_actor_label(actor)}; {counts[S.CONNECTED]} of "
                      f"{counts['total']} station(s) had connected.")
    _forget_password(install)
    audit_record(action="fleet_install_cancel", obj=install, actor=actor)
    install.job.refresh_from_db()
    return install


def _counts(install: FleetInstall) -> dict[str, int]:
    counts: dict[str, int] = {s: 0 for s in S}
    for status in install.stations.values_list("status", flat=True):
        counts[status] += 1
    counts["total"] = sum(counts.values())
    return counts


def _finish_if_complete(install: FleetInstall) -> None:
    install.job.refresh_from_db()
    if install.job.is_finished or install.job.status != Job.Status.RUNNING:
        return
    if install.stations.exclude(status__in=Row.TERMINAL).exists():
        return
    c = _counts(install)
    result = (f"{c[S.CONNECTED]} of {c['total']} station(s) connected; {c[S.FAILED]} failed; "
              f"{c[S.CANCELLED]} cancelled.")
    status = Job.Status.SUCCEEDED if c[S.FAILED] == 0 else Job.Status.FAILED
    job_finish(job=install.job, status=status, result=result)
    _forget_password(install)


def _forget_password(install: FleetInstall) -> None:
    """A finished install no longer needs the password (the devices hold their own copy)."""
    FleetInstall.objects.filter(pk=install.pk).update(key_password="")


# --------------------------------------------------------------------------- periodic


def fleet_advance(*, now: datetime | None = None) -> int:
    """The periodic sweep: time out, follow onboarding requests, place, finish.

    Safe to run twice at once: every move re-reads its row under a lock and re-checks it.
    Returns how many running installs were looked at.
    """
    now = now or timezone.now()
    installs = list(FleetInstall.objects.filter(job__status=Job.Status.RUNNING, dry_run=False)
                    .select_related("job"))
    for install in installs:
        with transaction.atomic():
            _lock_job(install.job_id)
            timed_out = now >= install.deadline
            ids = install.stations.exclude(status__in=Row.TERMINAL).values_list("pk", flat=True)
            for row_id in list(ids):
                row = _locked(row_id, lock_job=False)  # job locked above
                if row.status in Row.TERMINAL:
                    continue
                if timed_out:
                    error = ("The station was not seen before the job timeout."
                             if row.dispatched_at is None else
                             f"Not connected before the job timeout (was "
                             f"{row.get_status_display().lower()}).")
                    _transition(row, S.FAILED, error=error)
                else:
                    _sync_from_request(row)
        if not timed_out:
            fleet_install_dispatch(install=install)
        _finish_if_complete(install)
    return len(installs)


def default_endpoint() -> str:
    """The broker endpoint to offer: the JITP setup's data endpoint when that model exists,
    else the endpoint of the most recent fleet install."""
    from django.apps import apps

    for model in apps.get_app_config("provisioning").get_models():
        names = {f.name for f in model._meta.get_fields()}
        if "data_endpoint" in names:
            value = (model._default_manager.exclude(data_endpoint="")
                     .exclude(data_endpoint__isnull=True)
                     .order_by("-pk").values_list("data_endpoint", flat=True).first())
            if value:
                return str(value)
    last = FleetInstall.objects.exclude(endpoint="").order_by("-created_at").first()
    return last.endpoint if last else ""
