"""Placing a fleet install's rows: the device of each chosen row's station created or
updated in its desired configuration (GET /agent/config), up to the install's concurrency.

Rows are placed in bulk: the chosen rows are locked in one statement, then their devices
(the lock order of ``transitions.row_lock``: job, rows, devices); missing devices are
created in one insert, the rows written in one update and their log lines in one insert.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Case, F, OuterRef, Subquery, Value, When
from django.utils import timezone

from devices.models import MqttDevice, Station
from devices.selectors import station_online_since
from portal.errors import Conflict

from ..jobs.models import Job
from ..jobs.services import job_log_many
from .models import FleetInstall
from .transitions import Row, S, job_lock, row_move


def _devices_for(rows: list[Row], install: FleetInstall) -> tuple[dict[int, MqttDevice], set[int]]:
    """The install's device of each row's station, by station id, locked: the ones that
    exist, and the others created in one statement; plus the ids of those created.

    A device of the same name that another transaction creates meanwhile makes the insert
    fail on the (station, name) constraint: then it is locked and used like any other."""
    station_of = {row.station_id: row.station for row in rows}
    for _ in range(3):
        devices = {
            d.station_id: d
            for d in MqttDevice.objects.select_for_update().filter(
                station_id__in=list(station_of), name=install.device_name
            )
        }
        fresh = [
            MqttDevice(
                station=station,
                name=install.device_name,
                endpoint=install.endpoint,
                port=install.port,
                signing_profile=install.signing_profile,
                key_password=install.key_password,
                onboarding_comment=install.onboarding_comment,
                status=MqttDevice.Status.PENDING_INSTALL,
            )
            for station_id, station in station_of.items()
            if station_id not in devices
        ]
        try:
            with transaction.atomic():
                created = MqttDevice.objects.bulk_create(fresh)
        except IntegrityError:
            continue
        devices.update({d.station_id: d for d in created})
        return devices, {d.pk for d in created}
    raise Conflict("Devices of this name keep appearing on these stations; try again.")


def _device_update(device: MqttDevice, install: FleetInstall) -> None:
    """An existing device takes the install's settings (its key password only while no key
    is in use: the station encrypts the key with it)."""
    device.endpoint, device.port = install.endpoint, install.port
    device.signing_profile = install.signing_profile
    device.onboarding_comment = install.onboarding_comment
    fields = ["endpoint", "port", "signing_profile", "onboarding_comment", "updated_at"]
    if device.current_certificate_id is None:
        device.key_password = install.key_password
        fields.append("key_password")
    device.full_clean()
    device.save(update_fields=fields)


CREATED_NOTE = "Device created in the station's desired configuration."
UPDATED_NOTE = "Existing device updated in the station's desired configuration."


def _place_rows(rows: list[Row], install: FleetInstall) -> None:
    """Create or update each (locked) row's device so it appears in its station's
    /agent/config; the rows and their log lines are written in one statement each. A
    device that is already connected is skipped untouched (no second certificate)."""
    devices, created_ids = _devices_for(rows, install)
    now = timezone.now()
    placed, created_stations, log = [], [], []
    for row in rows:
        device = devices[row.station_id]
        created = device.pk in created_ids
        if device.status == MqttDevice.Status.CONNECTED:
            row.device = device
            row.attempts += 1
            row.dispatched_at = now
            row.save(update_fields=["device", "attempts", "dispatched_at"])
            row_move(row, S.CONNECTED, note="Already connected; skipped (no second certificate).")
            continue
        if created:
            created_stations.append(row.station_id)
        else:
            _device_update(device, install)
        placed.append(row.pk)
        log.append(f"{row.station.name}: {CREATED_NOTE if created else UPDATED_NOTE}")
    # One statement for every placed row: each takes its station's device of this name.
    Row.objects.filter(pk__in=placed).update(
        device_id=Subquery(
            MqttDevice.objects.filter(
                station_id=OuterRef("station_id"), name=install.device_name
            ).values("pk")[:1]
        ),
        created_device=Case(
            When(station_id__in=created_stations, then=Value(True)),
            default=F("created_device"),
        ),
        attempts=F("attempts") + 1,
        dispatched_at=now,
        note=Case(
            When(station_id__in=created_stations, then=Value(CREATED_NOTE)),
            default=Value(UPDATED_NOTE),
        ),
    )
    job_log_many(job=install.job, messages=log)


@transaction.atomic
def fleet_install_dispatch(*, install: FleetInstall, station: Station | None = None) -> int:
    """Place queued rows of online stations, up to the concurrency cap; returns how many."""
    job_lock(install.job_id)
    job = Job.objects.get(pk=install.job_id)
    if job.status != Job.Status.RUNNING:
        return 0
    rows = Row.objects.filter(install=install)
    in_flight = rows.filter(dispatched_at__isnull=False, status__in=Row.IN_FLIGHT).count()
    slots = install.concurrency - in_flight
    if slots <= 0:
        return 0
    candidates = rows.filter(
        status=S.QUEUED,
        dispatched_at__isnull=True,
        station__last_seen_at__gte=station_online_since(),
    )
    if station is not None:
        candidates = candidates.filter(station=station)
    chosen = list(candidates.order_by("station__name").values_list("pk", flat=True)[:slots])
    # This transaction holds the job lock; the rows are locked in one statement, then
    # their devices (the lock order of transitions.row_lock: job, rows, devices).
    locked = list(
        Row.objects.select_for_update(of=("self",))
        .select_related("station", "device")
        .filter(pk__in=chosen, status=S.QUEUED, dispatched_at__isnull=True)
        .order_by("station__name")
    )
    for row in locked:
        row.install = install
    if locked:
        _place_rows(locked, install)
    return len(locked)
