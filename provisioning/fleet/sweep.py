"""The periodic sweep of fleet installs (``provisioning.tasks.fleet_advance``, every 30 s):
start what lost its start message, time rows out, follow onboarding requests, place waiting
stations, finish what is complete."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..jobs.models import Job
from .models import FleetInstall
from .placement import fleet_install_dispatch
from .services import fleet_install_run, install_finish_if_complete
from .transitions import Row, S, job_lock, row_follow_request, row_lock, row_move

# A queued install older than this is started by the periodic sweep (fleet_advance, 30 s).
START_AFTER_SECONDS = 30


def fleet_advance(*, now: datetime | None = None) -> int:
    """The periodic sweep: start what was never started, time out, follow onboarding
    requests, place, finish.

    An install still queued ``START_AFTER_SECONDS`` after its creation lost its start
    message (the broker was down or restarted empty): the sweep runs the start itself.
    Safe to run twice at once: the start is a conditional UPDATE of the job (one wins) and
    every move re-reads its row under a lock and re-checks it.
    Returns how many running installs were looked at.
    """
    now = now or timezone.now()
    unstarted = FleetInstall.objects.filter(
        job__status=Job.Status.QUEUED,
        dry_run=False,
        job__created_at__lt=now - timedelta(seconds=START_AFTER_SECONDS),
    ).values_list("pk", flat=True)
    for install_id in list(unstarted):
        fleet_install_run(install_id=install_id)
    installs = list(
        FleetInstall.objects.filter(job__status=Job.Status.RUNNING, dry_run=False).select_related(
            "job"
        )
    )
    for install in installs:
        with transaction.atomic():
            job_lock(install.job_id)
            timed_out = now >= install.deadline
            ids = install.stations.exclude(status__in=Row.TERMINAL).values_list("pk", flat=True)
            for row_id in list(ids):
                row = row_lock(row_id, lock_job=False)  # job locked above
                if row.status in Row.TERMINAL:
                    continue
                if timed_out:
                    error = (
                        "The station was not seen before the job timeout."
                        if row.dispatched_at is None
                        else f"Not connected before the job timeout (was "
                        f"{row.get_status_display().lower()})."
                    )
                    row_move(row, S.FAILED, error=error)
                else:
                    row_follow_request(row)
        if not timed_out:
            fleet_install_dispatch(install=install)
        install_finish_if_complete(install)
    return len(installs)
