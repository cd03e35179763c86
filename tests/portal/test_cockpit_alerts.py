"""Alerts: a signed webhook (received by a real local HTTP server) and email (Django's outbox
and a real local SMTP server), once per condition and once more when it clears."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail

from portal.celery import app as celery_app
from portal.cockpit.alerts import alerts_evaluate
from portal.cockpit.delivery import AlertDeliveryFailed, alert_send
from portal.models import AlertChannel, AlertState
from signing.models import SigningProfile
from signing.services import ca_generate
from tests.conftest import wait_for
from tests.devices.factories import CA_PASSWORD, make_profile

pytestmark = [pytest.mark.django_db(transaction=False), pytest.mark.integration]
SECRET = "webhook-signing-secret-1"


class Receiver:
    """A webhook receiver on 127.0.0.1 in a thread; keeps every request it got."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def eager() -> Iterator[None]:
    """Run the delivery task in this process as soon as the evaluation commits."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def _evaluate(capture) -> Any:  # noqa: ANN001
    with capture(execute=True):
        return alerts_evaluate()


def _webhook(url: str, conditions: list[str]) -> AlertChannel:
    channel = AlertChannel(name="ops-hook", kind="webhook", webhook_url=url, conditions=conditions)
    channel.webhook_secret = SECRET
    channel.save()
    return channel


def _valid(request: dict[str, Any]) -> bool:
    ts = request["headers"]["X-Portal-Timestamp"]
    expected = hmac.new(SECRET.encode(), ts.encode() + b"." + request["body"], hashlib.sha256)
    return hmac.compare_digest(
        request["headers"]["X-Portal-Signature"], "sha256=" + expected.hexdigest()
    )


def test_ca_expiry_webhook_once_signed_then_cleared_when_the_ca_is_replaced(
    receiver: Receiver,
    eager: None,
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    profile = make_profile()  # its CA expires in 30 days: the 30-day threshold
    _webhook(receiver.url, ["ca_expiry"])
    assert _evaluate(django_capture_on_commit_callbacks).fired == 1
    assert _evaluate(django_capture_on_commit_callbacks).fired == 0  # once per condition
    assert len(receiver.requests) == 1
    first = receiver.requests[0]
    assert _valid(first)
    message = receiver.messages()[0]
    assert (message["event"], message["condition"], message["subject"]) == (
        "firing",
        "ca_expiry",
        profile.ca.alias,
    )
    assert message["severity"] == "critical"
    assert message["level"] == 3
    assert SECRET not in first["body"].decode()

    # Replaced: the profile now signs with a new CA, nothing uses the old one any more.
    new_ca = ca_generate(alias="ca-2027", dn="CN=New CA,C=DE", password=CA_PASSWORD, days=900)
    SigningProfile.objects.filter(pk=profile.pk).update(ca=new_ca)
    assert _evaluate(django_capture_on_commit_callbacks).cleared == 1
    assert _evaluate(django_capture_on_commit_callbacks).cleared == 0
    assert [m["event"] for m in receiver.messages()] == ["firing", "cleared"]
    assert all(_valid(r) for r in receiver.requests)
    state = AlertState.objects.get()
    assert not state.firing
    assert state.cleared_at is not None


def test_email_alert_lands_in_the_outbox_once(
    eager: None, django_capture_on_commit_callbacks
) -> None:  # noqa: ANN001
    make_profile()
    AlertChannel.objects.create(
        name="ops-mail", kind="email", email_to="ops@example.com", conditions=["ca_expiry"]
    )
    _evaluate(django_capture_on_commit_callbacks)
    _evaluate(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert mail.outbox[0].subject.startswith("[fleet portal] ALERT: CA 'test-ca' expires on")


def test_email_alert_through_a_real_local_smtp_server(
    eager: None,
    django_capture_on_commit_callbacks,
    settings,  # noqa: ANN001
) -> None:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.append(envelope)
            return "250 OK"

    with socket.socket() as probe:  # a free port (the controller's self-check needs a real one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        make_profile()
        AlertChannel.objects.create(
            name="smtp", kind="email", email_to="noc@example.com", conditions=["ca_expiry"]
        )
        _evaluate(django_capture_on_commit_callbacks)
        wait_for(lambda: received, timeout=10, message="the alert email at the SMTP server")
    finally:
        controller.stop()
    assert received[0].rcpt_tos == ["noc@example.com"]
    assert b"CA 'test-ca' expires on" in received[0].content


def test_count_conditions_fire_and_clear(
    eager: None, django_capture_on_commit_callbacks, receiver: Receiver
) -> None:  # noqa: ANN001
    from datetime import timedelta

    from django.utils import timezone

    from devices.models import Station
    from tests.portal.fleet_builder import build_fleet

    build_fleet(stations=6, certs_per_station=1, profile=make_profile(), now=timezone.now())
    _webhook(receiver.url, ["stations_unseen"])
    AlertChannel.objects.update(station_unseen_minutes=30)
    _evaluate(django_capture_on_commit_callbacks)
    [message] = receiver.messages()
    assert message["detail"] == {"count": 2, "minutes": 30}  # the two stale stations
    Station.objects.update(last_seen_at=timezone.now() - timedelta(minutes=1))
    _evaluate(django_capture_on_commit_callbacks)
    assert [m["event"] for m in receiver.messages()] == ["firing", "cleared"]


def test_send_test_action_and_the_secret_is_write_only(admin_client, receiver: Receiver) -> None:  # noqa: ANN001
    channel = _webhook(receiver.url, ["ca_expiry"])
    page = admin_client.get(f"/admin/portal/alertchannel/{channel.pk}/change/")
    assert page.status_code == 200
    assert SECRET not in page.content.decode()
    response = admin_client.post(
        "/admin/portal/alertchannel/",
        {"action": "send_test", "_selected_action": [channel.pk]},
        follow=True,
    )
    assert "Sent a test alert through" in response.content.decode()
    [message] = receiver.messages()
    assert message["event"] == "test"
    assert _valid(receiver.requests[0])


def test_a_refusing_receiver_raises_for_the_retry_without_the_secret() -> None:
    failing = Receiver(status=500)
    failing.thread.start()
    try:
        channel = _webhook(failing.url, ["ca_expiry"])
        with pytest.raises(AlertDeliveryFailed) as exc:
            alert_send(channel=channel, payload={"event": "test", "summary": "x"})
    finally:
        failing.server.shutdown()
        failing.server.server_close()
    assert "HTTP 500" in exc.value.detail
    assert SECRET not in exc.value.detail
    from portal.cockpit.tasks import alert_deliver

    assert AlertDeliveryFailed in alert_deliver.autoretry_for
    assert alert_deliver.max_retries == 8
