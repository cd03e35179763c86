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

Placing rows lives in ``placement``, the per-row moves in ``transitions``, cancelling in
``cancel``, the periodic sweep in ``sweep``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.models import MqttDevice, Station, name_validator
from portal.errors import Conflict
from portal.handoff import send_task_on_commit
from portal.services import Actor, audit_record
from signing.models import SigningProfile

from ..jitp.models import JitpSettings
from ..jobs.models import Job
from ..jobs.services import (
    job_create,
    job_finish,
    job_log,
    job_progress,
    job_start,
)
from .models import FleetInstall
from .placement import fleet_install_dispatch
from .plan import fleet_install_plan, plan_summary
from .transitions import Row, S

MIN_CERT_PASSWORD_LENGTH = 8


class FleetInstallFinished(Conflict):
    """The install (or the station's row in it) has already finished."""

    code = "fleet_install_finished"


class DryRunNotStartable(Conflict):
    """A dry run only plans; it has nothing to start."""

    code = "dry_run_not_startable"


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*\.?$"
)


def actor_label(actor: Actor) -> str:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return actor.get_username()
    return "system"


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
        errors.setdefault("stations", []).append(f"Unknown station(s): {', '.join(unknown)}.")
    elif not station_objs:
        errors.setdefault("stations", []).append(
            "Select at least one station." if not all_stations else "There are no stations."
        )
    device_name = (device_name or "").strip()
    try:
        name_validator(device_name)
    except ValidationError as exc:
        errors.setdefault("device_name", []).append(
            "The device name is required." if not device_name else " ".join(exc.messages)
        )
    endpoint = (endpoint or "").strip()
    if not endpoint:
        errors.setdefault("endpoint", []).append("A broker endpoint is required.")
    elif not _HOSTNAME.match(endpoint):
        errors.setdefault("endpoint", []).append(
            "The broker endpoint must be a host name such as "
            "abc123-ats.iot.eu-west-1.amazonaws.com (no scheme, no port)."
        )
    if not 1 <= int(port) <= 65535:
        errors.setdefault("port", []).append("The port must be between 1 and 65535.")
    profile_obj: SigningProfile | None
    if isinstance(profile, SigningProfile):
        profile_obj = profile
    else:
        profile_obj = SigningProfile.objects.filter(name=(profile or "").strip()).first()
        if profile_obj is None:
            errors.setdefault("profile", []).append(
                f"There is no signing profile named '{profile}'."
                if profile
                else "A signing profile is required."
            )
    if not dry_run and len(key_password or "") < MIN_CERT_PASSWORD_LENGTH:
        errors.setdefault("key_password", []).append(
            f"The certificate password must be at least {MIN_CERT_PASSWORD_LENGTH} characters."
        )
    concurrency = settings.FLEET_INSTALL_DEFAULT_CONCURRENCY if concurrency is None else concurrency
    if concurrency < 1:
        errors.setdefault("concurrency", []).append("The concurrency cap must be at least 1.")
    timeout = timeout or timedelta(hours=settings.FLEET_INSTALL_DEFAULT_TIMEOUT_HOURS)
    if timeout <= timedelta(0):
        errors.setdefault("timeout", []).append("The timeout must be positive.")
    if errors:
        raise ValidationError(errors)
    assert profile_obj is not None

    plan = [
        p.as_dict()
        for p in fleet_install_plan(
            stations=station_objs,
            device_name=device_name,
            endpoint=endpoint,
            port=int(port),
            profile=profile_obj,
        )
    ]
    title = (
        f"{'Dry run: install' if dry_run else 'Install'} '{device_name}' on "
        f"{len(station_objs)} station(s)"
    )
    # A dry run installs nothing: its progress counters stay at zero (the plan says it all).
    job = job_create(
        kind=Job.Kind.FLEET_INSTALL,
        title=title,
        actor=actor,
        total=0 if dry_run else len(station_objs),
    )
    install = FleetInstall(
        job=job,
        device_name=device_name,
        signing_profile=profile_obj,
        endpoint=endpoint,
        port=int(port),
        key_password="" if dry_run else key_password,
        onboarding_comment=comment,
        concurrency=concurrency,
        timeout=timeout,
        dry_run=dry_run,
        plan=plan,
    )
    install.full_clean()
    install.save()
    audit_record(
        action="fleet_install_create",
        obj=install,
        actor=actor,
        detail={
            "stations": len(station_objs),
            "dry_run": dry_run,
            "device": device_name,
            "endpoint": endpoint,
        },
    )
    if dry_run:
        job_start(job=job)
        for entry in plan:
            job_log(job=job, message=f"{entry['station']}: {entry['action']}: {entry['detail']}")
        job_finish(
            job=job,
            status=Job.Status.SUCCEEDED,
            result=f"Dry run, nothing changed: {plan_summary(plan)}.",
        )
        install.job.refresh_from_db()
        return install
    now = timezone.now()
    by_name = {p["station"]: p for p in plan}
    rows = []
    skipped = 0
    for station in station_objs:
        if by_name[station.name]["action"] == "skip":
            skipped += 1
            rows.append(
                Row(
                    install=install,
                    station=station,
                    status=S.CONNECTED,
                    note="Already connected; skipped (no second certificate).",
                    device=MqttDevice.objects.get(station=station, name=device_name),
                    connected_at=now,
                    finished_at=now,
                    status_changed_by="system",
                )
            )
        else:
            rows.append(Row(install=install, station=station))
    Row.objects.bulk_create(rows)
    if skipped:
        job_progress(job=job, done=skipped)
    return install


def fleet_install_start(*, install: FleetInstall) -> None:
    """Start the install's task once the rows are committed (queue ``fleet``)."""
    if install.dry_run:
        raise DryRunNotStartable("A dry run cannot be started; create the install without dry run.")
    from .tasks import fleet_install_run

    install_id = install.pk
    send_task_on_commit(fleet_install_run, install_id)


def fleet_install_run(*, install_id: int) -> int:
    """The task body: mark the job running, place devices up to the cap, settle what can be."""
    install = FleetInstall.objects.select_related("job").filter(pk=install_id).first()
    if install is None or install.dry_run or install.job.is_finished:
        return 0
    if install.job.status == Job.Status.QUEUED and job_start(job=install.job):
        job_log(
            job=install.job,
            message=(
                f"Started: device '{install.device_name}' to {install.endpoint}:{install.port}, "
                f"at most {install.concurrency} station(s) in flight, timeout {install.timeout}."
            ),
        )
    placed = fleet_install_dispatch(install=install)
    install_finish_if_complete(install)
    return placed


def install_counts(install: FleetInstall) -> dict[str, int]:
    counts: dict[str, int] = {s: 0 for s in S}
    for status in install.stations.values_list("status", flat=True):
        counts[status] += 1
    counts["total"] = sum(counts.values())
    return counts


def install_finish_if_complete(install: FleetInstall) -> None:
    install.job.refresh_from_db()
    if install.job.is_finished or install.job.status != Job.Status.RUNNING:
        return
    if install.stations.exclude(status__in=Row.TERMINAL).exists():
        return
    c = install_counts(install)
    result = (
        f"{c[S.CONNECTED]} of {c['total']} station(s) connected; {c[S.FAILED]} failed; "
        f"{c[S.CANCELLED]} cancelled."
    )
    status = Job.Status.SUCCEEDED if c[S.FAILED] == 0 else Job.Status.FAILED
    job_finish(job=install.job, status=status, result=result)
    install_password_forget(install)


def install_password_forget(install: FleetInstall) -> None:
    """A finished install no longer needs the password (the devices hold their own copy)."""
    FleetInstall.objects.filter(pk=install.pk).update(key_password="")


def default_endpoint() -> str:
    """The broker endpoint to offer: the JITP setup's data endpoint, else the endpoint of the
    most recent fleet install."""
    value = (
        JitpSettings.objects.exclude(data_endpoint="")
        .order_by("-pk")
        .values_list("data_endpoint", flat=True)
        .first()
    )
    if value:
        return str(value)
    last = FleetInstall.objects.exclude(endpoint="").order_by("-created_at").first()
    return last.endpoint if last else ""
