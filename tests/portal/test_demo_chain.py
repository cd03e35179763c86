"""The demo's building blocks: secrets, stations and tokens on re-runs, AWS data, timeouts."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from devices.models import MqttDevice, Station
from portal import demo_chain as chain
from portal import demo_script
from portal.tokens import hash_token
from provisioning.aws import aws_service_get
from provisioning.jitp import jitp_settings_get
from provisioning.models import AccessKey

STANDIN = chain.StandIn(
    endpoint_url="http://127.0.0.1:1",
    mqtt_endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
    mqtt_port=8883,
    broker_ca="/nonexistent/ca.pem",
    amazon_ca="/nonexistent/amazon.pem",
    broker="127.0.0.1:1883",
    role_arn="arn:aws:iam::123456789012:role/demo-jitp",
)


def test_demo_secrets_are_generated_once_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "secrets.env"
    first = chain.demo_secrets(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first["AWS_SECRET_ACCESS_KEY"]) == 40
    assert len(first["CA_PASSWORD"]) >= 8
    assert chain.demo_secrets(path) == first


@pytest.mark.django_db
def test_stations_are_reused_with_their_token_or_get_a_new_one(tmp_path: Path) -> None:
    stations = chain.demo_stations(count=2, prefix="t-", root=tmp_path)
    assert [s.name for s in stations] == ["t-001", "t-002"]
    tokens = {s.name: s.token_file.read_text().strip() for s in stations}
    for station in stations:
        assert station.token_file.stat().st_mode & 0o777 == 0o600
        assert Station.objects.get(name=station.name).token_hash == hash_token(tokens[station.name])

    (tmp_path / "t-002" / "token").unlink()  # a lost token cannot be read back: rotated
    again = chain.demo_stations(count=3, prefix="t-", root=tmp_path)
    assert Station.objects.filter(name__startswith="t-").count() == 3
    assert again[0].token_file.read_text().strip() == tokens["t-001"]
    new = again[1].token_file.read_text().strip()
    assert new != tokens["t-002"]
    assert Station.objects.get(name="t-002").token_hash == hash_token(new)


@pytest.mark.django_db
def test_aws_data_is_prepared_once_and_a_purged_key_entered_again(tmp_path: Path) -> None:
    secrets_ = chain.demo_secrets(tmp_path / "secrets.env")
    chain.demo_prepare_aws(standin=STANDIN, secrets_=secrets_)
    service = aws_service_get()
    assert service.enabled
    assert service.region == chain.DEMO_REGION
    row = jitp_settings_get()
    assert row.access_key.access_key_id == chain.DEMO_ACCESS_KEY_ID
    assert row.role_arn == STANDIN.role_arn
    assert row.ca_alias == chain.DEMO_CA_ALIAS
    assert row.ca_password == secrets_["CA_PASSWORD"]

    chain.demo_prepare_aws(standin=STANDIN, secrets_=secrets_)
    assert AccessKey.objects.count() == 1
    AccessKey.objects.update(secret=None, purged_at=timezone.now())
    chain.demo_prepare_aws(standin=STANDIN, secrets_=secrets_)
    key = AccessKey.objects.get()
    assert key.is_stored
    assert jitp_settings_get().access_key == key


@pytest.mark.django_db
def test_timeout_names_the_stuck_stations_with_their_status(tmp_path: Path) -> None:
    started = timezone.now()
    stations = chain.demo_stations(count=3, prefix="w-", root=tmp_path)
    by_name = {s.name: Station.objects.get(name=s.name) for s in stations}
    MqttDevice.objects.create(
        station=by_name["w-001"],
        name="aws",
        status=MqttDevice.Status.CONNECTED,
        last_connected_at=started + timedelta(seconds=1),
    )
    MqttDevice.objects.create(
        station=by_name["w-002"],
        name="aws",
        status=MqttDevice.Status.CONNECTED,  # from an earlier run
        last_connected_at=started - timedelta(hours=1),
    )
    with pytest.raises(chain.DemoError) as caught:
        demo_script.wait_all_connected(
            stations=stations, since=started, deadline=time.monotonic() + 0.5, timeout=0.5
        )
    message = str(caught.value)
    assert message.startswith("Timed out after 0.5 s; these stations are not connected: ")
    assert "w-002 (connected)" in message
    assert "w-003 (no device yet)" in message
    assert "w-001" not in message

    MqttDevice.objects.filter(station__name="w-002").update(last_connected_at=timezone.now())
    MqttDevice.objects.create(
        station=by_name["w-003"],
        name="aws",
        status=MqttDevice.Status.CONNECTED,
        last_connected_at=timezone.now(),
    )
    demo_script.wait_all_connected(
        stations=stations, since=started, deadline=time.monotonic() + 5, timeout=5
    )


@pytest.mark.django_db
def test_a_stopped_child_ends_the_wait_at_once(tmp_path: Path) -> None:
    stations = chain.demo_stations(count=1, prefix="d-", root=tmp_path)
    begin = time.monotonic()
    with pytest.raises(chain.DemoError, match=r"^The worker process stopped; .*d-001"):
        demo_script.wait_all_connected(
            stations=stations,
            since=timezone.now(),
            deadline=time.monotonic() + 60,
            timeout=60,
            dead=lambda: "worker",
        )
    assert time.monotonic() - begin < 5
