"""Stations admin: health, filters, no N+1, tokens shown once, CSV import, fleet-install form,
and secrets never in the HTML."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from devices.models import MqttDevice, Station
from devices.station_services import CsvImportError, stations_import_csv
from portal.tokens import hash_token
from provisioning.models import FleetInstall, FleetInstallStation, Job
from tests.devices.factories import (
    DEVICE_PASSWORD,
    bearer,
    make_device,
    make_profile,
    make_station,
)

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/devices/station/"
FORM = "/admin/devices/station/fleet-install/"


@pytest.fixture
def admin_client(client, superuser):  # noqa: ANN001, ANN201
    client.force_login(superuser)
    return client


def test_changelist_shows_health_devices_and_filters(admin_client) -> None:  # noqa: ANN001
    make_station("st-on", online=True, site="Berlin")
    make_station("st-stale", site="Paris", last_seen_at=timezone.now() - timedelta(hours=2))
    never, _ = make_station("st-never", site="Berlin")
    make_device(never, status=MqttDevice.Status.ERROR)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Online" in page
    assert "Stale" in page
    assert "Never seen" in page
    assert "aws: Error" in page

    def names(query: str) -> set[str]:
        response = admin_client.get(CHANGELIST + query)
        assert response.status_code == 200
        return {s.name for s in response.context["cl"].result_list}

    assert names("?health=online") == {"st-on"}
    assert names("?health=stale") == {"st-stale"}
    assert names("?health=never") == {"st-never"}
    assert names("?site=Berlin") == {"st-on", "st-never"}
    assert names("?device_status=error") == {"st-never"}
    assert names("?device_status=none") == {"st-on", "st-stale"}
    assert names("?q=stale") == {"st-stale"}


def test_changelist_query_count_does_not_grow_with_stations(admin_client) -> None:  # noqa: ANN001
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(ctx.captured_queries)

    for i in range(3):
        make_device(make_station(f"a-{i}")[0])
    few = count()
    for i in range(12):
        make_device(make_station(f"b-{i}")[0])
    assert count() == few


def test_add_shows_the_token_once_and_stores_only_its_hash(admin_client) -> None:  # noqa: ANN001
    response = admin_client.post(
        "/admin/devices/station/add/",
        {
            "name": "st-new",
            "description": "roof",
            "site": "Lyon",
            "tags": "hvac, roof",
        },
    )
    assert response.status_code == 200
    token = response.context["token"]
    assert token in response.content.decode()
    station = Station.objects.get(name="st-new")
    assert station.token_hash == hash_token(token)
    assert station.site == "Lyon"
    assert station.tags == ["hvac", "roof"]
    assert admin_client.get("/api/v1/agent/config", **bearer(token)).status_code == 200
    change = admin_client.get(f"/admin/devices/station/{station.pk}/change/").content.decode()
    assert token not in change


def test_rotate_token_object_action(admin_client) -> None:  # noqa: ANN001
    station, old = make_station("st-1")
    url = reverse("admin:devices_station_rotate_token", args=[station.pk])
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    station.refresh_from_db()
    assert station.token_hash == hash_token(old)  # GET changes nothing
    response = admin_client.post(url)
    new = response.context["token"]
    assert new in response.content.decode()
    assert new != old
    station.refresh_from_db()
    assert station.token_hash == hash_token(new)


def test_csv_import_creates_all_and_shows_tokens_once(admin_client) -> None:  # noqa: ANN001
    data = b"name,site,description,tags\nst-1,Berlin,one,a;b\nst-2,Paris,,\n"
    response = admin_client.post(
        reverse("admin:devices_station_import_csv"), {"file": SimpleUploadedFile("s.csv", data)}
    )
    assert response.status_code == 200
    created = response.context["created"]
    assert [s.name for s, _ in created] == ["st-1", "st-2"]
    for station, token in created:
        assert token in response.content.decode()
        assert Station.objects.get(pk=station.pk).token_hash == hash_token(token)
    assert Station.objects.get(name="st-1").tags == ["a", "b"]


def test_csv_import_is_all_or_nothing_with_per_row_errors(admin_client) -> None:  # noqa: ANN001
    make_station("taken")
    data = (
        "name,site\nok-1,Berlin\nbad name,Berlin\ntaken,Paris\nok-1,Rome\n,Oslo\n"
        "ok-2," + "x" * 101 + "\n"
    ).encode()
    with pytest.raises(CsvImportError) as info:
        stations_import_csv(data=data)
    errors = info.value.errors
    assert any(e.startswith("Line 3: name:") for e in errors)
    assert "Line 4: a station named 'taken' already exists." in errors
    assert "Line 5: station 'ok-1' already appears on line 2." in errors
    assert "Line 6: the name is empty." in errors
    assert any(e.startswith("Line 7: site:") for e in errors)
    assert not Station.objects.filter(name__in=["ok-1", "ok-2"]).exists()
    response = admin_client.post(
        reverse("admin:devices_station_import_csv"), {"file": SimpleUploadedFile("s.csv", data)}
    )
    assert "Nothing was imported" in response.content.decode()
    assert "already exists" in response.content.decode()
    for bad, sentence in [
        (b"site\nBerlin\n", "header"),
        (b"name\n", "no stations"),
        (b"\xff\xfe", "UTF-8"),
        (b"name,colour\nx,red\n", "Unknown column"),
    ]:
        with pytest.raises(CsvImportError) as info:
            stations_import_csv(data=bad)
        assert sentence in info.value.errors[0]


def test_action_leads_to_prefilled_form(admin_client) -> None:  # noqa: ANN001
    a, _ = make_station("st-a")
    b, _ = make_station("st-b")
    response = admin_client.post(
        CHANGELIST, {"action": "install_mqtt_device", "_selected_action": [a.pk, b.pk]}
    )
    assert response.status_code == 302
    form_page = admin_client.get(response["Location"])
    assert form_page.status_code == 200
    assert {int(x) for x in form_page.context["form"].initial["stations"]} == {a.pk, b.pk}
    assert form_page.context["form"].initial["endpoint"] == ""  # no JITP result, no history


def _form_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "device_name": "aws",
        "profile": make_profile().pk,
        "endpoint": "abc123-ats.iot.eu-west-1.amazonaws.com",
        "port": 8883,
        "key_password": DEVICE_PASSWORD,
        "comment": "batch 1",
        "concurrency": 10,
        "timeout_hours": 24,
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("overrides", "sentence"),
    [
        ({"stations": []}, "Select at least one station."),
        ({"stations": [999999]}, "Unknown station: 999999."),
        ({"endpoint": ""}, "A broker endpoint is required."),
        ({"key_password": "short"}, "at least 8 characters"),
    ],
)
def test_form_errors(admin_client, overrides, sentence) -> None:  # noqa: ANN001
    make_station("st-a")
    response = admin_client.post(FORM, _form_data(**overrides))
    assert response.status_code == 200
    page = response.content.decode()
    assert sentence in page
    assert DEVICE_PASSWORD not in page
    assert not Job.objects.exists()


def test_form_dry_run_then_real_run(admin_client, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    a, _ = make_station("st-a", online=True)
    response = admin_client.post(FORM, _form_data(stations=[a.pk], dry_run="on"))
    assert response.status_code == 302
    dry = FleetInstall.objects.get()
    page = admin_client.get(response["Location"]).content.decode()
    assert "Dry run plan" in page
    assert "create" in page
    assert not MqttDevice.objects.exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(FORM, _form_data(stations=[a.pk]))
    assert response.status_code == 302
    assert len(callbacks) == 1  # the Celery task is queued after commit
    real = FleetInstall.objects.exclude(pk=dry.pk).get()
    assert real.key_password == DEVICE_PASSWORD
    assert FleetInstallStation.objects.filter(install=real).count() == 1
    page = admin_client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' in page
    assert "0 done / 0 failed / 1 total" in page
    assert "st-a" in page
    assert DEVICE_PASSWORD not in page
    # the next form offers the last endpoint
    assert admin_client.get(FORM).context["form"].initial["endpoint"] == real.endpoint


def test_job_page_cancel_buttons(admin_client) -> None:  # noqa: ANN001
    from provisioning.fleet import fleet_install_create, fleet_install_run

    make_station("st-a", online=True)
    make_station("st-b", online=True)
    install = fleet_install_create(
        device_name="aws",
        profile=make_profile(),
        endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
        key_password=DEVICE_PASSWORD,
        stations=["st-a", "st-b"],
    )
    fleet_install_run(install_id=install.pk)
    row = install.stations.get(station__name="st-a")
    url = reverse("admin:provisioning_fleetinstall_cancel_station", args=[install.pk, row.pk])
    assert admin_client.get(url).status_code == 403
    admin_client.post(url)
    row.refresh_from_db()
    assert row.status == "cancelled"
    admin_client.post(reverse("admin:provisioning_fleetinstall_cancel", args=[install.pk]))
    install.job.refresh_from_db()
    assert install.job.status == "cancelled"
    page = admin_client.get(
        reverse("admin:provisioning_fleetinstall_progress", args=[install.pk])
    ).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert "Cancelled" in page


def test_secrets_never_in_admin_html(admin_client) -> None:  # noqa: ANN001
    from provisioning.fleet import fleet_install_create

    station, token = make_station("st-a", online=True)
    device = make_device(station)
    install = fleet_install_create(
        device_name="aws",
        profile=make_profile(),
        endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
        key_password="fleet-secret-password",
        stations=["st-a"],
    )
    pages = [
        CHANGELIST,
        f"/admin/devices/station/{station.pk}/change/",
        "/admin/devices/mqttdevice/",
        f"/admin/devices/mqttdevice/{device.pk}/change/",
        "/admin/provisioning/fleetinstall/",
        reverse("admin:provisioning_fleetinstall_progress", args=[install.pk]),
    ]
    for url in pages:
        response = admin_client.get(url, follow=True)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in (DEVICE_PASSWORD, "fleet-secret-password", token):
            assert secret not in html, url
    assert admin_client.get("/admin/devices/mqttdevice/add/").status_code == 403
    # The fleet installs list offers the job form too.
    assert FORM in admin_client.get("/admin/provisioning/fleetinstall/").content.decode()


def test_change_form_edits_descriptive_fields_only(admin_client) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    device = make_device(station)
    response = admin_client.post(
        f"/admin/devices/station/{station.pk}/change/",
        {
            "description": "basement",
            "site": "Oslo",
            "tags": "a; b",
            "devices-TOTAL_FORMS": "1",
            "devices-INITIAL_FORMS": "1",
            "devices-MIN_NUM_FORMS": "0",
            "devices-MAX_NUM_FORMS": "1000",
            "devices-0-id": device.pk,
            "devices-0-station": station.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    station.refresh_from_db()
    assert (station.description, station.site, station.tags) == ("basement", "Oslo", ["a", "b"])
    assert station.token_hash == hash_token(token)
    assert MqttDevice.objects.filter(pk=device.pk).exists()
