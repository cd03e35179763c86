"""End to end: revoking one of two connected devices from the command line.

``manage.py demo --scripted --keep-running --stations 2`` runs the stand-in, web, worker,
beat and two real agents until both devices are connected through the stand-in. Then
``revoke_certificates --device … --reason keyCompromise --wait 60`` (as staff would run it):
within 60 s the revoked device's live MQTT session is closed and its reconnects are refused
(its agent reports the refusal, the portal shows the device revoked), the other device keeps
publishing heartbeats, and AWS (a separate boto3 client against the stand-in) shows the
certificate REVOKED without policies. The revoked device's agent learns of the revocation
from its configuration and takes the recovery path: a first request (fresh key) that waits
for staff, instead of reconnecting for ever.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import boto3
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import (
    DemoRun,
    heartbeat_subscriber,
    needs_mosquitto_clients,
)
from tests.e2e.test_demo_e2e import STANDIN_LINE

pytestmark = [needs_mosquitto_clients, pytest.mark.slow]

DEVICE_STATE = (
    "import json; from devices.models import MqttDevice; "
    "d = MqttDevice.objects.get(station__name='{station}', name='aws'); "
    "print(json.dumps({{'status': d.status, 'reported': [e for e in "
    "d.station.reported_state.get('devices', []) if e.get('name') == 'aws']}}))"
)
RECOVERY_REQUESTS = (
    "from signing.models import OnboardingRequest; "
    "print(OnboardingRequest.objects.filter(device__station__name='{station}', "
    "device__name='aws', is_renewal=False, status='pending').count())"
)


def _iot(url: str):  # noqa: ANN202
    return boto3.client(
        "iot",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="AKIAE2EREVOCATIONTEST",
        aws_secret_access_key="not-a-secret",
    )


def _certificate_of(iot, thing: str) -> tuple[str, str]:  # noqa: ANN001
    """(certificate id, ARN) of the certificate attached to ``thing`` in AWS."""
    (arn,) = iot.list_thing_principals(thingName=thing)["principals"]
    return arn.rsplit("/", 1)[1], arn


def test_revoking_one_of_two_connected_devices_reaches_aws_and_its_session(
    demo_env: dict[str, str],
) -> None:
    prefix = f"rv{uuid.uuid4().hex[:6]}-"
    env = dict(demo_env, AGENT_HEARTBEAT_INTERVAL="1")
    demo = DemoRun.scripted(env, prefix=prefix, stations=2, timeout=150, keep_running=True)
    sub = None
    try:
        found = demo.wait_line(STANDIN_LINE, timeout=60)
        # Staff's commands reach the same AWS as the demo's processes: the stand-in.
        demo.env["AWS_ENDPOINT_URL"] = found["url"]
        revoked_station, kept_station = f"{prefix}001", f"{prefix}002"
        revoked_thing, kept_thing = f"{revoked_station}:aws", f"{kept_station}:aws"
        sub = heartbeat_subscriber(found, prefix)
        demo.wait_line(r"^All stations connected \(2 of 2", timeout=180)

        def beats(thing: str) -> int:
            return sum(1 for line in list(sub.lines) if line.startswith(f"things/{thing}/"))

        wait_for(
            lambda: beats(revoked_thing) and beats(kept_thing),
            timeout=30,
            message="heartbeats of both devices",
        )
        iot = _iot(found["url"])
        cert_id, arn = _certificate_of(iot, revoked_thing)
        kept_id, _ = _certificate_of(iot, kept_thing)
        assert iot.list_attached_policies(target=arn)["policies"]

        started = time.monotonic()
        out = demo.manage(
            "revoke_certificates",
            "--device",
            f"{revoked_station}/aws",
            "--reason",
            "keyCompromise",
            "--wait",
            "60",
        )
        took = time.monotonic() - started
        assert took < 60, out
        assert f"Revoked {revoked_thing}" in out
        assert "AWS shows 1 certificate(s) REVOKED." in out

        # AWS's side, seen by a client of its own.
        desc = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
        assert desc["status"] == "REVOKED"
        wait_for(
            lambda: iot.list_attached_policies(target=arn)["policies"] == [],
            timeout=30,
            message="the revoked certificate's policies detached",
        )
        kept = iot.describe_certificate(certificateId=kept_id)["certificateDescription"]
        assert kept["status"] == "ACTIVE"

        # The revoked device's session is closed: its heartbeats stop while the other
        # device's go on (several more of them, one a second).
        wait_for(
            lambda: _agent_reports_refusal(demo, revoked_station),
            timeout=60,
            interval=1.0,
            message="the revoked device's agent to report the refusal",
        )
        silent_from = beats(revoked_thing)
        kept_from = beats(kept_thing)
        wait_for(
            lambda: beats(kept_thing) >= kept_from + 5,
            timeout=30,
            message="five more heartbeats of the device that was not revoked",
        )
        assert beats(revoked_thing) == silent_from
        state = _state(demo, kept_station)
        assert state["status"] == "connected"
        assert state["reported"][0]["connected"] is True
        # The revoked device recovers through staff: a first request with a fresh key.
        wait_for(
            lambda: _recovery_requests(demo, revoked_station) == 1,
            timeout=60,
            interval=1.0,
            message="the revoked device's recovery request",
        )
        wait_for(
            lambda: _state(demo, revoked_station)["status"] == "awaiting_approval",
            timeout=30,
            interval=1.0,
            message="the revoked device awaiting staff approval",
        )
        assert beats(revoked_thing) == silent_from
        assert demo.proc.poll() is None, demo.output[-3000:]
    finally:
        if sub is not None:
            sub.close()
        demo.stop()


def _state(demo: DemoRun, station: str) -> dict:
    out = demo.manage("shell", "-c", DEVICE_STATE.format(station=station))
    return json.loads(out.strip().splitlines()[-1])


def _recovery_requests(demo: DemoRun, station: str) -> int:
    out = demo.manage("shell", "-c", RECOVERY_REQUESTS.format(station=station))
    return int(out.strip().splitlines()[-1])


def _agent_reports_refusal(demo: DemoRun, station: str) -> bool:
    """The portal shows the device revoked and its agent reported the broker's refusal, or
    the agent has already moved on to its recovery request (its next configuration poll)."""
    state = _state(demo, station)
    reported = state["reported"][0] if state["reported"] else {}
    if reported.get("connected") is not False:
        return False
    refused = bool(re.search(r"refused the certificate", reported.get("last_error") or ""))
    return (state["status"] == "revoked" and refused) or (
        state["status"] == "awaiting_approval" and reported.get("status") == "awaiting_approval"
    )
