"""Fleet install services: validation, dry run, placement under the cap, progression, re-run,
cancel and timeout."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from freezegun import freeze_time

from devices.models import MqttDevice
from provisioning.fleet import (
    FleetInstallFinished,
    fleet_advance,
    fleet_config_delivered,
    fleet_install_cancel,
    fleet_install_create,
    fleet_install_run,
    fleet_install_station_cancel,
    station_report_state,
)
from provisioning.models import FleetInstallStation, Job
from signing.models import OnboardingRequest
from tests.devices.factories import DEVICE_PASSWORD, make_device, make_profile, make_station

S = FleetInstallStation.Status
ENDPOINT = "abc123-ats.iot.eu-west-1.amazonaws.com"
pytestmark = pytest.mark.django_db


def create(stations, **kw):  # noqa: ANN001, ANN003, ANN201
    params = {
        "device_name": "aws",
        "profile": make_profile(),
        "endpoint": ENDPOINT,
        "key_password": DEVICE_PASSWORD,
        "stations": stations,
    }
    params.update(kw)
    return fleet_install_create(**params)


def rows(install):  # noqa: ANN001, ANN201
    return {r.station.name: r for r in install.stations.select_related("station", "device")}


def device_request(device: MqttDevice, **fields: str) -> OnboardingRequest:
    """The device's onboarding request as the agent's submission leaves it (pending)."""
    return OnboardingRequest.objects.create(
        station=device.station,
        device=device,
        profile=make_profile(),
        csr_pem="x",
        key_type="ec-p256",
        public_key_fingerprint="f" * 64,
        **fields,
    )


def report(station, status, **extra):  # noqa: ANN001, ANN003, ANN201
    return station_report_state(
        station=station,
        report={"agent_version": "0.1.0", "devices": [{"name": "aws", "status": status, **extra}]},
    )


@pytest.mark.parametrize(
    ("kwargs", "field", "sentence"),
    [
        ({"stations": ["nope", "st-a"]}, "stations", "Unknown station(s): nope."),
        ({"stations": []}, "stations", "Select at least one station."),
        ({"endpoint": ""}, "endpoint", "A broker endpoint is required."),
        ({"endpoint": "https://x.example.com:8883"}, "endpoint", "must be a host name"),
        ({"profile": "missing"}, "profile", "There is no signing profile named 'missing'."),
        ({"key_password": "short"}, "key_password", "at least 8 characters"),
        ({"device_name": "bad name!"}, "device_name", "letters, digits"),
    ],
)
def test_create_refuses_bad_input_with_a_sentence(kwargs, field, sentence) -> None:  # noqa: ANN001
    make_station("st-a")
    params = {"stations": ["st-a"], **kwargs}
    with pytest.raises(ValidationError) as info:
        create(**params)
    assert field in info.value.message_dict
    assert sentence in " ".join(info.value.message_dict[field])
    assert not Job.objects.exists()


def test_dry_run_plans_per_station_and_changes_nothing() -> None:
    a, _ = make_station("st-a")
    b, _ = make_station("st-b")
    c, _ = make_station("st-c")
    d, _ = make_station("st-d")
    make_device(b, endpoint="old.example.com")
    make_device(c, status=MqttDevice.Status.CONNECTED)
    make_device(d, endpoint=ENDPOINT)
    before = list(MqttDevice.objects.values_list("pk", "endpoint", "status"))
    install = create(["st-a", "st-b", "st-c", "st-d"], dry_run=True, key_password="")
    plan = {p["station"]: p["action"] for p in install.plan}
    assert plan == {"st-a": "create", "st-b": "update", "st-c": "skip", "st-d": "nothing"}
    assert list(MqttDevice.objects.values_list("pk", "endpoint", "status")) == before
    assert install.job.status == Job.Status.SUCCEEDED
    assert install.key_password == ""
    assert not install.stations.exists()
    assert "1 to create, 1 to update, 1 unchanged, 1 already connected" in install.job.result


def test_start_places_only_online_stations_up_to_the_cap() -> None:
    for name in ("st-a", "st-b", "st-c"):
        make_station(name, online=True)
    make_station("st-off")
    install = create(["st-a", "st-b", "st-c", "st-off"], concurrency=2)
    assert fleet_install_run(install_id=install.pk) == 2
    install.job.refresh_from_db()
    assert install.job.status == Job.Status.RUNNING
    r = rows(install)
    assert [n for n, row in r.items() if row.dispatched_at] == ["st-a", "st-b"]
    device = MqttDevice.objects.get(station__name="st-a", name="aws")
    assert device.endpoint == ENDPOINT
    assert device.key_password == DEVICE_PASSWORD
    assert device.status == MqttDevice.Status.PENDING_INSTALL
    assert not MqttDevice.objects.filter(station__name__in=["st-c", "st-off"]).exists()
    # st-a submits its CSR: its slot frees up, st-c gets the device; st-off stays queued.
    report(r["st-a"].station, "awaiting_approval")
    assert MqttDevice.objects.filter(station__name="st-c").exists()
    assert rows(install)["st-off"].status == S.QUEUED
    # The offline station shows up while the cap is full (st-b, st-c in flight): it waits...
    station_report_state(station=r["st-off"].station, report={"devices": []})
    assert not MqttDevice.objects.filter(station__name="st-off").exists()
    # ...until a slot frees up while it is online.
    report(r["st-b"].station, "awaiting_approval")
    assert MqttDevice.objects.filter(station__name="st-off", name="aws").exists()
    report(r["st-a"].station, "connected", connected=True)
    station_report_state(station=r["st-off"].station, report={"devices": []})
    assert MqttDevice.objects.filter(station__name="st-off", name="aws").exists()


def test_progression_from_config_fetch_reports_and_request() -> None:
    station, _ = make_station("st-a", online=True)
    install = create(["st-a"])
    fleet_install_run(install_id=install.pk)
    assert rows(install)["st-a"].status == S.QUEUED
    fleet_config_delivered(station=station, device_names=["aws"])
    assert rows(install)["st-a"].status == S.DELIVERED
    report(station, "onboarding")
    assert rows(install)["st-a"].status == S.ONBOARDING
    device = MqttDevice.objects.get(station=station, name="aws")
    assert device.status == MqttDevice.Status.ONBOARDING
    device_request(device)
    report(station, "onboarding")  # the request, not the report, says "awaiting approval"
    assert rows(install)["st-a"].status == S.AWAITING_APPROVAL
    report(station, "connected", connected=True, thing_name="st-a-aws")
    row = rows(install)["st-a"]
    assert row.status == S.CONNECTED
    assert row.connected_at is not None
    install.job.refresh_from_db()
    assert install.job.status == Job.Status.SUCCEEDED
    assert (install.job.progress_done, install.job.progress_failed) == (1, 0)
    assert "1 of 1 station(s) connected" in install.job.result
    install.refresh_from_db()
    assert install.key_password == ""  # a finished install forgets the password
    device.refresh_from_db()
    assert device.client_id == "st-a-aws"
    assert device.last_connected_at is not None


def test_rejected_request_fails_the_station() -> None:
    station, _ = make_station("st-a", online=True)
    install = create(["st-a"])
    fleet_install_run(install_id=install.pk)
    device = MqttDevice.objects.get(station=station)
    device_request(device, status="rejected", reason="Unknown site.")
    fleet_advance()
    row = rows(install)["st-a"]
    assert row.status == S.FAILED
    assert "was rejected: Unknown site." in row.last_error
    install.job.refresh_from_db()
    assert install.job.status == Job.Status.FAILED
    assert install.job.progress_failed == 1


def test_rerun_creates_no_duplicate_and_skips_connected_devices() -> None:
    a, _ = make_station("st-a", online=True)
    b, _ = make_station("st-b", online=True)
    first = create(["st-a", "st-b"])
    fleet_install_run(install_id=first.pk)
    fleet_install_run(install_id=first.pk)  # the task delivered twice: nothing new
    assert MqttDevice.objects.count() == 2
    assert {r.attempts for r in rows(first).values()} == {1}
    report(a, "connected", connected=True)
    device_a = MqttDevice.objects.get(station=a)
    second = create(
        ["st-a", "st-b"],
        endpoint="other-ats.iot.eu-west-1.amazonaws.com",
        key_password="another-password",
    )
    r = rows(second)
    assert r["st-a"].status == S.CONNECTED
    assert "skipped" in r["st-a"].note
    fleet_install_run(install_id=second.pk)
    assert MqttDevice.objects.count() == 2
    device_a.refresh_from_db()
    assert device_a.endpoint == ENDPOINT  # a connected device is never touched
    device_b = MqttDevice.objects.get(station=b)
    assert device_b.endpoint == "other-ats.iot.eu-west-1.amazonaws.com"
    assert rows(second)["st-b"].created_device is False


def test_cancel_one_station_removes_a_device_not_yet_onboarded() -> None:
    make_station("st-a", online=True)
    make_station("st-b", online=True)
    install = create(["st-a", "st-b"])
    fleet_install_run(install_id=install.pk)
    fleet_install_station_cancel(row=rows(install)["st-a"])
    assert rows(install)["st-a"].status == S.CANCELLED
    assert not MqttDevice.objects.filter(station__name="st-a").exists()
    assert MqttDevice.objects.filter(station__name="st-b").exists()
    with pytest.raises(FleetInstallFinished):
        fleet_install_station_cancel(row=rows(install)["st-a"])
    fleet_install_cancel(install=install)
    install.job.refresh_from_db()
    assert install.job.status == Job.Status.CANCELLED
    assert {r.status for r in rows(install).values()} == {S.CANCELLED}
    install.refresh_from_db()
    assert install.key_password == ""
    assert not MqttDevice.objects.exists()


def test_cancel_keeps_a_device_that_existed_before() -> None:
    station, _ = make_station("st-a", online=True)
    make_device(station, endpoint="old.example.com")
    install = create(["st-a"])
    fleet_install_run(install_id=install.pk)
    fleet_install_cancel(install=install)
    assert MqttDevice.objects.filter(station=station).exists()
    assert "kept" in rows(install)["st-a"].note


def test_offline_station_stays_queued_until_the_timeout() -> None:
    make_station("st-off")
    install = create(["st-off"], timeout=timedelta(hours=1))
    fleet_install_run(install_id=install.pk)
    fleet_advance()
    assert rows(install)["st-off"].status == S.QUEUED
    with freeze_time(timezone.now() + timedelta(hours=1, minutes=1)):
        fleet_advance()
        fleet_advance()  # twice is harmless
    row = rows(install)["st-off"]
    assert row.status == S.FAILED
    assert row.last_error == "The station was not seen before the job timeout."
    install.job.refresh_from_db()
    assert install.job.status == Job.Status.FAILED
    assert (install.job.progress_done, install.job.progress_failed) == (0, 1)


def test_fleet_advance_is_a_periodic_task_on_the_fleet_queue() -> None:
    from django.conf import settings
    from django_celery_beat.models import PeriodicTask

    import provisioning.tasks  # noqa: F401  (a worker finds it by autodiscovery)
    from portal.celery import app
    from portal.schedules import install_periodic_tasks

    install_periodic_tasks()
    task = PeriodicTask.objects.get(task="provisioning.tasks.fleet_advance")
    assert task.enabled
    assert "provisioning.tasks.fleet_advance" in app.tasks
    route = app.amqp.router.route({}, "provisioning.tasks.fleet_advance")
    assert route["queue"].name == "fleet"
    assert "provisioning.tasks.fleet_*" in settings.CELERY_TASK_ROUTES


def test_generic_job_page_links_a_fleet_install_to_its_station_page(client, superuser) -> None:  # noqa: ANN001
    from django.urls import reverse

    make_station("st-a")
    make_station("st-b")
    install = create(["st-a", "st-b"])
    client.force_login(superuser)
    page = client.get(reverse("admin:provisioning_job_change", args=[install.job.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "2 stations" in html
    assert reverse("admin:provisioning_fleetinstall_progress", args=[install.pk]) in html
    assert DEVICE_PASSWORD not in html


def test_a_report_that_changes_nothing_writes_nothing_for_the_install() -> None:
    """Agents report every poll interval; with 1,000 stations each of those reports used to
    lock the install's job row (and re-dispatch the install), so the portal's threads queued
    on that one lock until the agents' requests timed out (found by the fleet benchmark).
    An unchanged report now only reads."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from provisioning.fleet import fleet_station_reported

    station, _ = make_station("st-a", online=True)
    install = create(["st-a"])
    fleet_install_run(install_id=install.pk)
    fleet_config_delivered(station=station, device_names=["aws"])
    report(station, "onboarding")
    lines = install.job.log_lines.count()
    with CaptureQueriesContext(connection) as queries:
        fleet_station_reported(
            station=station, devices={"aws": {"name": "aws", "status": "onboarding"}}
        )
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].lstrip().upper().startswith("SELECT")
    ]
    assert writes == []
    assert install.job.log_lines.count() == lines
    assert rows(install)["st-a"].status == S.ONBOARDING
    # A report that moves the row still moves it (and finishes the install).
    report(station, "connected", connected=True, thing_name="st-a-aws")
    install.job.refresh_from_db()
    assert install.job.status == Job.Status.SUCCEEDED


def test_the_update_enforces_the_transition_table() -> None:
    """A move is made by ``UPDATE … WHERE status IN <sources>``: a row that the database
    already holds in a state the table cannot leave (here connected) is not moved, even when
    the caller's copy is out of date."""
    from provisioning.fleet.transitions import row_move

    assert FleetInstallStation.sources_of(S.QUEUED) == {S.FAILED}
    assert S.CONNECTED not in FleetInstallStation.sources_of(S.FAILED)
    make_station("st-a", online=True)
    install = create(["st-a"])
    fleet_install_run(install_id=install.pk)
    stale = rows(install)["st-a"]
    FleetInstallStation.objects.filter(pk=stale.pk).update(status=S.CONNECTED)
    assert row_move(stale, S.FAILED, error="late timeout") is False
    stale.refresh_from_db()
    assert stale.status == S.CONNECTED
    assert stale.last_error == ""
    install.job.refresh_from_db()
    assert install.job.progress_failed == 0


def test_placement_writes_each_row_its_device_note_and_log_line() -> None:
    make_station("st-a", online=True)
    b, _ = make_station("st-b", online=True)
    existing = make_device(b, endpoint="old.example.com")
    install = create(["st-a", "st-b"])
    fleet_install_run(install_id=install.pk)
    r = rows(install)
    assert r["st-a"].device == MqttDevice.objects.get(station__name="st-a", name="aws")
    assert r["st-a"].created_device is True
    assert r["st-a"].note == "Device created in the station's desired configuration."
    assert r["st-b"].device == existing
    assert r["st-b"].created_device is False
    assert r["st-b"].note == "Existing device updated in the station's desired configuration."
    assert {row.attempts for row in r.values()} == {1}
    assert all(row.dispatched_at is not None for row in r.values())
    lines = list(install.job.log_lines.values_list("message", flat=True))
    assert "st-a: Device created in the station's desired configuration." in lines
    assert "st-b: Existing device updated in the station's desired configuration." in lines
    created = MqttDevice.objects.get(station__name="st-a")
    assert (created.endpoint, created.key_password) == (ENDPOINT, DEVICE_PASSWORD)
    assert created.status == MqttDevice.Status.PENDING_INSTALL


@pytest.mark.django_db(transaction=True)
def test_a_device_created_meanwhile_elsewhere_is_used_not_duplicated(monkeypatch) -> None:  # noqa: ANN001
    """Another transaction creates (and commits) the device between the lookup and the
    insert: the insert fails on the (station, name) constraint, and placement takes that
    device instead."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer at a time: the other insert cannot happen meanwhile")
    a, _ = make_station("st-a", online=True)
    make_station("st-b", online=True)
    install = create(["st-a", "st-b"])
    original = type(MqttDevice.objects).bulk_create
    calls = []

    def racing_bulk_create(manager, objs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if not calls:
            calls.append(1)
            elsewhere = threading.Thread(target=create_elsewhere)  # its own connection
            elsewhere.start()
            elsewhere.join()
        return original(manager, objs, *args, **kwargs)

    def create_elsewhere() -> None:
        try:
            MqttDevice.objects.create(station=a, name="aws", endpoint="theirs.example.com")
        finally:
            connection.close()

    monkeypatch.setattr(type(MqttDevice.objects), "bulk_create", racing_bulk_create)
    fleet_install_run(install_id=install.pk)
    assert MqttDevice.objects.filter(name="aws").count() == 2
    r = rows(install)
    assert r["st-a"].created_device is False
    assert r["st-a"].device.endpoint == ENDPOINT  # updated to the install's settings
    assert r["st-b"].created_device is True
    assert calls == [1]


def test_placement_and_reports_never_load_the_install_plan() -> None:
    """The plan holds an entry per station (hundreds of KiB for a large fleet); decoding it
    per row placed or moved once cost 400 MiB and seconds of CPU for 1,000 stations."""
    from django.test.utils import CaptureQueriesContext

    a, _ = make_station("st-a", online=True)
    make_station("st-b", online=True)
    install = create(["st-a", "st-b"])
    with CaptureQueriesContext(connection) as ctx:
        fleet_install_run(install_id=install.pk)
        fleet_config_delivered(station=a, device_names=["aws"])
        report(a, "onboarding")
        report(a, "connected", connected=True)
    assert rows(install)["st-a"].status == S.CONNECTED
    loading_plan = [q["sql"] for q in ctx.captured_queries if '"plan"' in q["sql"]]
    assert loading_plan == []
