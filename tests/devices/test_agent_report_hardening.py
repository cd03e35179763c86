"""State reports: impossible dates are a 422; a station cannot rename a device's client id."""

from __future__ import annotations

import pytest

from devices.models import MqttDevice

from .factories import make_device, make_station
from .test_agent_api import post_state

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field", ["last_connected", "certificate_not_after"])
@pytest.mark.parametrize("value", ["2026-02-30T10:00:00", "2026-13-01T00:00:00Z", "yesterday"])
def test_an_impossible_date_is_a_422(client, field: str, value: str) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    make_device(station)
    body = {"devices": [{"name": "aws", "status": "connected", field: value}]}
    response = post_state(client, token, body)
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid_request"
    assert field in response.json()["detail"]
    station.refresh_from_db()
    assert station.last_seen_at is None  # nothing half-written
    assert MqttDevice.objects.get().status != MqttDevice.Status.CONNECTED


def test_a_report_cannot_overwrite_the_client_id(client) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    make_device(station, client_id="st-1-aws")
    body = {"devices": [{"name": "aws", "status": "connected", "thing_name": "someone-else"}]}
    response = post_state(client, token, body)
    assert response.status_code == 200
    assert response.json()["notes"] == [
        "Device 'aws' reported thing name 'someone-else', but its client id is its "
        "certificate's name 'st-1-aws'; ignored."
    ]
    assert MqttDevice.objects.get().client_id == "st-1-aws"


def test_a_report_may_fill_an_empty_client_id(client) -> None:  # noqa: ANN001
    station, token = make_station("st-1")
    make_device(station)
    body = {"devices": [{"name": "aws", "status": "connected", "thing_name": "st-1-aws"}]}
    assert post_state(client, token, body).json() == {"ok": True, "notes": []}
    assert MqttDevice.objects.get().client_id == "st-1-aws"
