"""Agent protocol endpoints: ETag/304, state reports, validation and token isolation."""

from __future__ import annotations

import pytest
from django.utils import timezone

from devices.models import MqttDevice, Station
from devices.services import station_rotate_token
from provisioning.fleet import fleet_install_create, fleet_install_run
from provisioning.models import FleetInstallStation
from tests.devices.factories import DEVICE_PASSWORD, bearer, make_device, make_profile, make_station

pytestmark = pytest.mark.django_db
CONFIG = "/api/v1/agent/config"
STATE = "/api/v1/agent/state"


def post_state(client, token, body):  # noqa: ANN001, ANN201
    return client.post(STATE, body, content_type="application/json", **bearer(token))


def test_config_has_etag_and_answers_304_until_it_changes(client) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    device = make_device(station, onboarding_comment="batch 7")
    first = client.get(CONFIG, **bearer(token))
    assert first.status_code == 200
    etag = first["ETag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    body = first.json()
    assert body["station"] == "st-1"
    assert body["poll_interval"] > 0
    (entry,) = body["devices"]
    assert entry["name"] == "aws"
    assert entry["port"] == 8883
    assert entry["key_password"] == DEVICE_PASSWORD
    assert entry["comment"] == "batch 7"
    assert entry["key_type"] == "ec-p256"
    assert entry["renew_after"] is None
    assert entry["heartbeat_topic"] == "things/{thing}/heartbeat"
    assert client.get(CONFIG, HTTP_IF_NONE_MATCH=etag, **bearer(token)).status_code == 304
    assert client.get(CONFIG, HTTP_IF_NONE_MATCH=f"W/{etag}", **bearer(token)).status_code == 304
    assert client.get(CONFIG, HTTP_IF_NONE_MATCH='"other"', **bearer(token)).status_code == 200
    device.endpoint = "new-ats.iot.eu-west-1.amazonaws.com"
    device.save()
    changed = client.get(CONFIG, HTTP_IF_NONE_MATCH=etag, **bearer(token))
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert changed.json()["devices"][0]["endpoint"] == "new-ats.iot.eu-west-1.amazonaws.com"


def test_a_station_never_sees_another_stations_config_or_password(client) -> None:  # noqa: ANN001
    a, token_a = make_station("st-a")
    b, token_b = make_station("st-b")
    make_device(a, key_password="password-of-a-123")
    dev_b = make_device(b, name="aws")
    dev_b.key_password = "password-of-b-456"
    dev_b.save()
    body_a = client.get(CONFIG, **bearer(token_a)).content.decode()
    body_b = client.get(CONFIG, **bearer(token_b)).content.decode()
    assert "password-of-b-456" not in body_a
    assert '"station": "st-a"' in body_a
    assert "password-of-a-123" not in body_b
    assert '"station": "st-b"' in body_b
    # Reporting a device name that only exists on another station touches nothing there.
    response = post_state(
        client, token_a, {"devices": [{"name": "other", "status": "error", "last_error": "boom"}]}
    )
    assert response.status_code == 200
    assert "not configured on this station" in response.json()["notes"][0]
    dev_b.refresh_from_db()
    assert dev_b.last_error == ""


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc"])
def test_bad_or_missing_token_is_401_json(client, header) -> None:  # noqa: ANN001
    make_station("st-1")
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    for response in (
        client.get(CONFIG, **extra),
        client.post(STATE, {}, content_type="application/json", **extra),
    ):
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


def test_rotated_token_stops_the_old_one(client) -> None:  # noqa: ANN001
    station, old = make_station("st-1")
    new = station_rotate_token(station=station)
    assert client.get(CONFIG, **bearer(old)).status_code == 401
    assert client.get(CONFIG, **bearer(new)).status_code == 200


def test_state_report_updates_station_and_devices(client) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    make_device(station)
    response = post_state(
        client,
        token,
        {
            "agent_version": "0.3.1",
            "devices": [
                {
                    "name": "aws",
                    "status": "connected",
                    "connected": True,
                    "thing_name": "st-1-aws",
                    "last_connected": "2026-01-02T03:04:05Z",
                    "certificate_serial": "0a1b",
                    "queue_depth": 0,
                },
                {"name": "ghost", "status": "installed"},
            ],
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "notes": ["Device 'ghost' is not configured on this station; ignored."],
    }
    station.refresh_from_db()
    assert station.agent_version == "0.3.1"
    assert abs((timezone.now() - station.last_seen_at).total_seconds()) < 10
    assert station.reported_state["devices"][0]["certificate_serial"] == "0a1b"
    device = MqttDevice.objects.get(station=station)
    assert device.status == MqttDevice.Status.CONNECTED
    assert device.client_id == "st-1-aws"
    assert device.last_connected_at.isoformat().startswith("2026-01-02T03:04:05")
    assert not MqttDevice.objects.filter(name="ghost").exists()
    post_state(
        client,
        token,
        {"devices": [{"name": "aws", "status": "error", "last_error": "TLS handshake failed."}]},
    )
    device.refresh_from_db()
    assert device.status == MqttDevice.Status.ERROR
    assert device.last_error == "TLS handshake failed."


@pytest.mark.parametrize(
    "body",
    [
        {"devices": [{"name": "aws", "status": "sleeping"}]},
        {"devices": [{"name": "../etc", "status": "installed"}]},
        {"devices": [{"status": "installed"}]},
        {"devices": "aws"},
        {"agent_version": "x" * 41},
        {"devices": [{"name": "aws", "status": "installed"}, {"name": "aws", "status": "error"}]},
    ],
)
def test_invalid_state_reports_are_422_json(client, body) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    make_device(station)
    response = post_state(client, token, body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert response.json()["detail"].endswith(".")
    station.refresh_from_db()
    assert station.last_seen_at is None


def test_not_json_is_a_4xx_json_error(client) -> None:  # noqa: ANN001
    _, token = make_station("st-1")
    response = client.post(STATE, "{not json", content_type="application/json", **bearer(token))
    assert 400 <= response.status_code < 500
    assert "code" in response.json()


def test_config_fetch_and_reports_drive_the_fleet_install_row(client) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    post_state(client, token, {"agent_version": "0.1.0", "devices": []})  # online now
    install = fleet_install_create(
        device_name="aws",
        profile=make_profile(),
        endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
        key_password=DEVICE_PASSWORD,
        stations=["st-1"],
    )
    fleet_install_run(install_id=install.pk)
    row = FleetInstallStation.objects.get(install=install)
    assert row.status == "queued"
    assert row.dispatched_at is not None
    config = client.get(CONFIG, **bearer(token))
    assert [d["name"] for d in config.json()["devices"]] == ["aws"]
    row.refresh_from_db()
    assert row.status == "delivered"
    post_state(client, token, {"devices": [{"name": "aws", "status": "onboarding"}]})
    row.refresh_from_db()
    assert row.status == "onboarding"
    post_state(
        client, token, {"devices": [{"name": "aws", "status": "connected", "connected": True}]}
    )
    row.refresh_from_db()
    assert row.status == "connected"
    assert Station.objects.get(pk=station.pk).devices.get().status == "connected"


def test_oversized_state_report_is_413(client, settings) -> None:  # noqa: ANN001
    settings.AGENT_MAX_BODY_BYTES = 200
    station, token = make_station("st-1")
    response = post_state(
        client,
        token,
        {
            "agent_version": "1",
            "devices": [{"name": "aws", "status": "error", "last_error": "x" * 500}],
        },
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_an_unchanged_poll_is_two_reads_and_no_write(
    client,  # noqa: ANN001
    django_assert_num_queries,  # noqa: ANN001
) -> None:
    """The 304 path: the token lookup and the configuration read, prepared statements on
    PostgreSQL (portal.hot_reads), still counted by Django's query log; nothing written."""
    station, token = make_station("st-poll")
    make_device(station, name="a")
    make_device(station, name="b", key_password="password-of-b-123")
    first = client.get(CONFIG, **bearer(token))
    assert [d["name"] for d in first.json()["devices"]] == ["a", "b"]
    assert first.json()["devices"][1]["key_password"] == "password-of-b-123"
    seen = Station.objects.get(pk=station.pk).last_seen_at
    with django_assert_num_queries(2) as ctx:
        again = client.get(CONFIG, HTTP_IF_NONE_MATCH=first["ETag"], **bearer(token))
    assert again.status_code == 304
    assert not [q for q in ctx.captured_queries if not q["sql"].lstrip().startswith("SELECT")]
    assert Station.objects.get(pk=station.pk).last_seen_at == seen


def test_a_late_report_of_the_same_agent_run_changes_nothing(client) -> None:  # noqa: ANN001
    """The agent gave up waiting for report 1 and sent report 2; report 1 arrives after it."""
    station, token = make_station("st-1")
    device = make_device(station)
    connected = {"name": "aws", "status": "connected", "connected": True}
    older = {"name": "aws", "status": "awaiting_approval"}
    newer = post_state(client, token, {"run": "a1b2", "sequence": 2, "devices": [connected]})
    assert newer.json() == {"ok": True, "notes": []}
    late = post_state(client, token, {"run": "a1b2", "sequence": 1, "devices": [older]})
    assert late.status_code == 200
    assert late.json()["notes"] == [
        "This report is older than one already recorded from this agent; ignored."
    ]
    device.refresh_from_db()
    assert device.status == MqttDevice.Status.CONNECTED
    # The same counter again is no newer either; the next one, or a new run, is taken.
    assert post_state(client, token, {"run": "a1b2", "sequence": 2, "devices": [older]}).json()[
        "notes"
    ]
    post_state(client, token, {"run": "ffff", "sequence": 1, "devices": [older]})
    device.refresh_from_db()
    assert device.status == MqttDevice.Status.AWAITING_APPROVAL
    post_state(client, token, {"run": "ffff", "sequence": 2, "devices": [connected]})
    device.refresh_from_db()
    assert device.status == MqttDevice.Status.CONNECTED
    # Reports without numbers (older agents) are taken as they come.
    post_state(client, token, {"devices": [older]})
    device.refresh_from_db()
    assert device.status == MqttDevice.Status.AWAITING_APPROVAL


@pytest.mark.parametrize(
    ("field", "value"),
    [("run", "not-hex!"), ("run", "a" * 33), ("sequence", -1), ("sequence", "x")],
)
def test_a_bad_report_order_is_a_422_and_records_nothing(client, field, value) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    make_device(station)
    body = {"run": "ab", "sequence": 1, "devices": [{"name": "aws", "status": "connected"}]}
    body[field] = value
    response = post_state(client, token, body)
    assert response.status_code == 422
    assert set(response.json()) == {"code", "detail"}
    assert Station.objects.get(pk=station.pk).last_seen_at is None
