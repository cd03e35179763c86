"""What the agents tell the portal about fleet installs: a config fetch proves delivery, a
state report (docs/agent-protocol.md) moves each placed row along.

``station_report_state`` is the one service behind POST /agent/state: the devices app records
the report on the station's rows, then the fleet installs follow it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from devices.models import Station
from devices.station_services import station_state_record

from ..jobs.models import Job
from ..lifecycle.retirement import certificates_connection_reported
from .agent_reads import station_in_running_install
from .models import FleetInstall
from .placement import fleet_install_dispatch
from .services import install_finish_if_complete
from .transitions import RANK, Row, S, move_from_request, row_follow_request, row_lock, row_move

_FROM_AGENT = {
    "installed": S.DELIVERED,
    "onboarding": S.ONBOARDING,
    "awaiting_approval": S.AWAITING_APPROVAL,
    "certificate_issued": S.ONBOARDING,
    "connected": S.CONNECTED,
}


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
        RANK[target] > RANK.get(row.status, 9)
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
    ids = list(
        _running_rows(
            station=station,
            status=S.QUEUED,
            dispatched_at__isnull=False,
            install__device_name__in=list(device_names),
        ).values_list("pk", flat=True)
    )
    moved = 0
    for row_id in ids:
        with transaction.atomic():
            row = row_lock(row_id, lock_job=False)  # queued -> delivered: no counter changes
            if row.status == S.QUEUED and row.dispatched_at is not None:
                moved += row_move(row, S.DELIVERED, note="The agent fetched the configuration.")
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
    if not station_in_running_install(station.pk):
        return
    installs = set(
        _running_rows(station=station, status=S.QUEUED, dispatched_at__isnull=True).values_list(
            "install_id", flat=True
        )
    )
    for install in FleetInstall.objects.filter(pk__in=installs).select_related("job"):
        fleet_install_dispatch(install=install, station=station)
    moved: set[int] = set()
    rows = list(
        _running_rows(station=station, dispatched_at__isnull=False)
        .exclude(status__in=Row.TERMINAL)
        .select_related("install")
        .only(
            "pk",
            "status",
            "last_error",
            "device_id",
            "dispatched_at",
            "install_id",
            "install__device_name",
        )
    )
    for peek in rows:
        entry = devices.get(peek.install.device_name)
        report_target, request_move = _report_move(peek, entry), move_from_request(peek)
        if report_target is None and request_move is None:
            continue
        finishing = report_target in Row.TERMINAL or (
            request_move is not None and request_move[0] in Row.TERMINAL
        )
        with transaction.atomic():
            # The job is locked (first) only when the row may finish: its counters change.
            row = row_lock(peek.pk, lock_job=finishing)
            if row.status in Row.TERMINAL:
                continue
            before = row.status
            target = _report_move(row, entry)
            if not finishing and (
                target in Row.TERMINAL
                or ((late := move_from_request(row)) is not None and late[0] in Row.TERMINAL)
            ):
                continue  # it became final meanwhile: the next report (or sweep) locks the job
            if target == "error":
                assert entry is not None
                row.last_error = (entry.get("last_error") or "The agent reported an error.")[:500]
                row.save(update_fields=["last_error"])
            elif target is not None:
                note = "Connected to the broker." if target == S.CONNECTED else None
                if entry is not None and entry.get("status") == "certificate_issued":
                    note = "Certificate issued; connecting."
                row_move(row, target, note=note, error="" if target == S.CONNECTED else None)
            row_follow_request(row)
            if (
                before in Row.IN_FLIGHT and row.status not in Row.IN_FLIGHT
            ) or row.status in Row.TERMINAL:
                moved.add(row.install_id)
    # A row that left the in-flight states may have freed a slot for other (online) stations
    # of the install; a row that finished may have been its last one.
    for install in FleetInstall.objects.filter(pk__in=moved).select_related("job"):
        fleet_install_dispatch(install=install)
        install_finish_if_complete(install)


def station_report_state(*, station: Station, report: dict[str, Any]) -> list[str]:
    """Record an agent's state report (the heartbeat); returns notes about ignored parts.

    ``report`` is the validated body of POST /agent/state. The station's rows are committed
    before fleet installs move on, so the two never hold each other's locks (fleet code locks
    job, then rows, then devices).
    """
    notes, reported = station_state_record(station=station, report=report)
    fleet_station_reported(station=station, devices=reported)
    # A connection with a certificate AWS has not been seen to hold ACTIVE: confirm it (and
    # a renewed certificate that proves itself retires its predecessor).
    certificates_connection_reported(station=station, devices=reported)
    return notes
