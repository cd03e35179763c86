"""Cancelling a fleet install, one station or the whole install (staff's doors: the job
page's buttons, the admin actions)."""

from __future__ import annotations

from django.db import transaction

from portal.services import Actor, audit_record

from ..jobs.models import Job
from ..jobs.services import job_finish
from .models import FleetInstall
from .services import (
    FleetInstallFinished,
    actor_label,
    install_counts,
    install_finish_if_complete,
    install_password_forget,
)
from .transitions import Row, S, row_lock, row_move


def _cancel_row(row: Row, actor: Actor) -> None:
    by = actor_label(actor)
    device = row.device
    note = "Cancelled by staff."
    if (
        device is not None
        and row.created_device
        and device.current_certificate_id is None
        and not device.certificates.exists()
    ):
        device.delete()
        row.device = None
        note = "Cancelled; the device was removed from the station's desired configuration."
    elif device is not None:
        note = (
            "Cancelled; the device was kept (it existed before this install or already "
            "holds a certificate)."
        )
    row_move(row, S.CANCELLED, by=by, note=note)


@transaction.atomic
def fleet_install_station_cancel(*, row: Row, actor: Actor = None) -> Row:
    """Cancel one station of a running install."""
    row = row_lock(row.pk)
    if row.status in Row.TERMINAL:
        raise FleetInstallFinished(
            f"Station {row.station.name} is already {row.get_status_display()} in this install."
        )
    _cancel_row(row, actor)
    audit_record(
        action="fleet_install_station_cancel",
        obj=row.install,
        actor=actor,
        detail={"station": row.station.name},
    )
    install_finish_if_complete(row.install)
    return row


@transaction.atomic
def fleet_install_cancel(*, install: FleetInstall, actor: Actor = None) -> FleetInstall:
    """Cancel a whole install: every unfinished station is cancelled, then the job."""
    job = Job.objects.select_for_update().get(pk=install.job_id)
    if job.is_finished:
        raise FleetInstallFinished(f"{job} is already {job.get_status_display().lower()}.")
    for row_id in install.stations.exclude(status__in=Row.TERMINAL).values_list("pk", flat=True):
        _cancel_row(row_lock(row_id), actor)
    counts = install_counts(install)
    job_finish(
        job=job,
        status=Job.Status.CANCELLED,
        result=f"Cancelled by {actor_label(actor)}; {counts[S.CONNECTED]} of "
        f"{counts['total']} station(s) had connected.",
    )
    install_password_forget(install)
    audit_record(action="fleet_install_cancel", obj=install, actor=actor)
    install.job.refresh_from_db()
    return install
