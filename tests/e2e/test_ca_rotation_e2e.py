"""End to end: a fleet of 20 stations connected through the AWS stand-in on CA 1 moves to a
generated CA 2 with ``rotate_ca --generate-ca … --wait 600``.

The demo (stand-in, web, worker, beat, 20 real agents) runs as a subprocess; staff's command
runs as another. Heartbeats are read on the broker behind the stand-in; their gaps are
measured with the agents' own timestamps (``ts`` in each heartbeat).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import datetime

import boto3
import pytest

from signing.signals import certificate_superseded
from tests.conftest import ROOT, wait_for
from tests.e2e.conftest import (
    DemoRun,
    Subscriber,
    heartbeat_subscriber,
    needs_mosquitto_clients,
)

# The whole chain with 20 agents takes 4-10 minutes on a busy 2-core machine.
pytestmark = [needs_mosquitto_clients, pytest.mark.slow, pytest.mark.timeout(1500)]

STATIONS = 20
HEARTBEAT_INTERVAL = 2
# One reconnect of the agent (--reconnect-max 5) after the renewal: the first connection
# with the new certificate is dropped by JITP, the next one is in. Heartbeats may stop for
# that long, plus a heartbeat interval, and not more.
MAX_HEARTBEAT_GAP = 20.0
STANDIN_LINE = (
    r"Local AWS stand-in up: control plane (?P<url>\S+), MQTT (?P<endpoint>\S+) on "
    r"127\.0\.0\.1:(?P<port>\d+), broker behind it (?P<host>[^:\s]+):(?P<bport>\d+)"
)
STATE = """
import json
from devices.models import MqttDevice
from signing.models import CertificateAuthority, IssuedCertificate
out = {"devices": [], "cas": {}}
for d in MqttDevice.objects.select_related("station", "current_certificate__ca").filter(
    station__name__startswith=PREFIX
):
    c = d.current_certificate
    out["devices"].append([d.station.name, d.status, c.ca.alias if c else None,
                           d.last_connected_at.isoformat() if d.last_connected_at else None])
for ca in CertificateAuthority.objects.all():
    out["cas"][ca.alias] = {
        "archived": ca.archived_at is not None,
        "active": IssuedCertificate.objects.filter(ca=ca, status="active").count(),
        "pem": ca.certificate_pem,
    }
print(json.dumps(out))
"""


def _state(demo: DemoRun, prefix: str) -> dict:
    out = demo.manage("shell", "-v", "0", "-c", f"PREFIX = {prefix!r}\n{STATE}")
    return json.loads(out.strip().splitlines()[-1])


def _heartbeats(sub: Subscriber, things: set[str]) -> dict[str, list[datetime]]:
    seen: dict[str, list[datetime]] = {t: [] for t in things}
    for line in list(sub.lines):
        topic, _, payload = line.partition(" ")
        match = re.fullmatch(r"things/(.+)/heartbeat", topic)
        if match and match.group(1) in things:
            try:
                seen[match.group(1)].append(datetime.fromisoformat(json.loads(payload)["ts"]))
            except (ValueError, KeyError):
                continue
    return seen


def _iot(url: str):  # noqa: ANN202
    return boto3.client(
        "iot",
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id="AKIAE2EOBSERVER00001",
        aws_secret_access_key="x" * 40,
    )


def test_rotate_ca_moves_twenty_connected_stations_to_a_new_ca(
    demo_env: dict[str, str],
) -> None:
    prefix = f"rot{uuid.uuid4().hex[:5]}-"
    demo_env.update(AGENT_HEARTBEAT_INTERVAL=str(HEARTBEAT_INTERVAL), AGENT_POLL_INTERVAL="2")
    demo = DemoRun.scripted(
        demo_env, prefix=prefix, stations=STATIONS, timeout=420, keep_running=True
    )
    sub = None
    try:
        found = demo.wait_line(STANDIN_LINE, timeout=90)
        sub = heartbeat_subscriber(found, prefix)
        demo.wait_line(r"^All stations connected", timeout=450)
        things = {f"{prefix}{i:03d}:aws" for i in range(1, STATIONS + 1)}
        wait_for(
            lambda: all(_heartbeats(sub, things).values()),
            timeout=60,
            message="a heartbeat of every station before the rotation",
        )
        before = _state(demo, prefix)
        assert {d[2] for d in before["devices"]} == {"jitp-ca"}
        assert before["cas"]["jitp-ca"]["active"] == STATIONS

        started = datetime.now().astimezone()
        rotate = subprocess.run(
            [
                sys.executable, "manage.py", "rotate_ca", "--from", "jitp-ca",
                "--generate-ca", "CN=Demo Fleet CA 2,O=Demo Fleet,C=DE", "--alias", "jitp-ca-2",
                "--days", "1000", "--rate", "40", "--wait", "600",
            ],
            cwd=ROOT,
            env={**demo.env, "CA_PASSWORD": "rotation-e2e-ca2-password",
                 "AWS_ENDPOINT_URL": found["url"]},
            capture_output=True,
            text=True,
            timeout=700,
        )  # fmt: skip
        assert rotate.returncode == 0, rotate.stdout[-4000:] + rotate.stderr
        assert "rotation-e2e-ca2-password" not in rotate.stdout + rotate.stderr
        assert "Rotation done" in rotate.stdout

        # Every station ends on CA 2 and connected with it.
        def all_moved() -> dict | None:
            state = _state(demo, prefix)
            moved = [
                d
                for d in state["devices"]
                if d[1] == "connected"
                and d[2] == "jitp-ca-2"
                and d[3] is not None
                and datetime.fromisoformat(d[3]) > started
            ]
            return state if len(moved) == STATIONS else None

        after = wait_for(all_moved, timeout=120, interval=1, message="20 stations on CA 2")
        assert isinstance(after, dict)
        assert after["cas"]["jitp-ca"] == {**after["cas"]["jitp-ca"], "archived": True, "active": 0}
        assert after["cas"]["jitp-ca-2"]["active"] == STATIONS

        # AWS's side: CA 1 INACTIVE (the outbox's deactivate_ca action, carried out by the
        # worker once the retirement committed), CA 2 ACTIVE (both registered).
        iot = _iot(found["url"])
        statuses: dict[str, tuple[str, str]] = {}

        def aws_ca_statuses() -> dict[str, str]:
            for item in iot.list_ca_certificates()["certificates"]:
                desc = iot.describe_ca_certificate(certificateId=item["certificateId"])
                pem = desc["certificateDescription"]["certificatePem"].strip()
                alias = next(a for a, ca in after["cas"].items() if ca["pem"].strip() == pem)
                statuses[alias] = (item["certificateId"], desc["certificateDescription"]["status"])
            return {a: s for a, (_, s) in statuses.items()}

        expected = {"jitp-ca": "INACTIVE", "jitp-ca-2": "ACTIVE"}
        wait_for(
            lambda: aws_ca_statuses() == expected,
            timeout=60,
            interval=1,
            message="CA 1 INACTIVE in AWS through the outbox",
        )

        # No station's heartbeats stopped for longer than one reconnect.
        done_at = datetime.now().astimezone()
        wait_for(
            lambda: all(
                stamps and max(stamps) > done_at for stamps in _heartbeats(sub, things).values()
            ),
            timeout=30,
            message="a heartbeat of every station after the rotation",
        )
        gaps: dict[str, tuple[float, str]] = {}
        for thing, stamps in _heartbeats(sub, things).items():
            window = [started, *sorted(t for t in stamps if t >= started)]
            assert len(window) > 1, f"no heartbeat of {thing} after the rotation started"
            gaps[thing] = max(
                ((b - a).total_seconds(), a.isoformat(timespec="seconds"))
                for a, b in zip(window, window[1:], strict=False)
            )
        worst = max(gap for gap, _ in gaps.values())
        print(f"largest heartbeat gap during the rotation: {worst:.1f} s")  # noqa: T201
        assert worst <= MAX_HEARTBEAT_GAP, sorted(gaps.items(), key=lambda kv: -kv[1][0])[:5]

        # AWS must also see no ACTIVE device certificate under CA 1: the old certificates
        # are retired in AWS (INACTIVE) by the certificate life cycle once their renewals
        # have proven themselves (a receiver of signing.signals.certificate_superseded).
        ca1_id = statuses["jitp-ca"][0]
        listed = iot.list_certificates_by_ca(caCertificateId=ca1_id)["certificates"]
        assert len(listed) == STATIONS
        if not certificate_superseded.has_listeners():
            still = sum(c["status"] == "ACTIVE" for c in listed)
            pytest.xfail(
                f"{still} old device certificates are still ACTIVE under CA 1 in AWS: nothing "
                "retires superseded certificates in AWS yet (the certificate life cycle)."
            )

        def none_active_under_ca1() -> bool:
            listed = iot.list_certificates_by_ca(caCertificateId=ca1_id)["certificates"]
            return all(c["status"] != "ACTIVE" for c in listed)

        wait_for(
            none_active_under_ca1,
            timeout=120,
            interval=2,
            message="no ACTIVE certificate under CA 1 in AWS",
        )
    finally:
        demo.stop()
        if sub is not None:
            sub.close()
