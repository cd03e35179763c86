"""End to end: ``manage.py demo --scripted`` and third-party MQTT clients through the stand-in.

The demo runs as a subprocess with its own data folder (and, in CI, its own PostgreSQL
database and Redis database number, with the machine's Mosquitto behind the stand-in): the
local AWS stand-in, web, worker, beat and real agents, driven by the same commands staff use.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import wait_for
from tests.e2e.conftest import (
    MOSQUITTO_PUB,
    DemoRun,
    Subscriber,
    heartbeat_subscriber,
    needs_mosquitto_clients,
    processes_with_data_dir,
)

# Each runs the whole demo (~20-50 s): slow, yet part of `make test` and CI.
pytestmark = [needs_mosquitto_clients, pytest.mark.slow]

STANDIN_LINE = (
    r"Local AWS stand-in up: control plane (?P<url>\S+), MQTT (?P<endpoint>\S+) on "
    r"127\.0\.0\.1:(?P<port>\d+), broker behind it (?P<host>[^:\s]+):(?P<bport>\d+)"
)


def _prefix() -> str:
    # Unique names: several demos may share the machine's Mosquitto (client ids = thing names).
    return f"e2e{uuid.uuid4().hex[:6]}-"


def test_demo_scripted_connects_every_station_and_a_subscriber_sees_them(
    demo_env: dict[str, str],
) -> None:
    """`demo --scripted --stations 3` exits 0 with "All stations connected"; an independent
    `mosquitto_sub` sees every station's heartbeat.

    The subscriber listens on the broker *behind* the stand-in (`things/+/heartbeat`), not
    through the stand-in: the portal's JITP template gives each device the least-privilege
    policy (publish/subscribe only under `things/<its own thing name>/…`), so a portal-issued
    certificate may not subscribe to other things' topics through the stand-in, exactly as on
    AWS. That a portal-issued certificate does work through the stand-in with mosquitto
    clients (its own topic) is shown by the next test.
    """
    prefix = _prefix()
    demo = DemoRun.scripted(demo_env, prefix=prefix, stations=3, timeout=120)
    sub = None
    try:
        found = demo.wait_line(STANDIN_LINE, timeout=60)
        sub = heartbeat_subscriber(found, prefix)
        code = demo.wait(150)
        assert code == 0, demo.output[-4000:]
        assert "All stations connected (3 of 3" in demo.output
        for phase in (
            "JITP set up",
            "Signing profile",
            "Fleet install started",
            "Requests approved",
            "Every device connected",
        ):
            assert re.search(rf"^\[\s*[\d.]+ s\] {phase}.*\([\d.]+ s\)$", demo.output, re.M), phase
        things = {f"{prefix}{i:03d}:aws" for i in range(1, 4)}

        def seen() -> set[str]:
            heard = set()
            for line in list(sub.lines):
                topic, _, payload = line.partition(" ")
                match = re.fullmatch(r"things/(.+)/heartbeat", topic)
                if match and match.group(1) in things:
                    assert json.loads(payload)["thing"] == match.group(1)
                    heard.add(match.group(1))
            return heard

        wait_for(
            lambda: seen() == things,
            timeout=15,
            message=f"heartbeats of {sorted(things)} (got {sub.lines[-5:]})",
        )
        wait_for(
            lambda: processes_with_data_dir(demo_env["PORTAL_DATA_DIR"]) == [],
            timeout=10,
            message="every child of the demo to exit",
        )
    finally:
        demo.stop()
        if sub is not None:
            sub.close()


def _portal_certificate(
    demo: DemoRun, portal: str, station: str, device: str, folder: Path
) -> tuple[Path, Path, str]:
    """A device certificate through the normal onboarding path: a station, its CSR on the
    station API, staff's `approve_requests`, the certificate fetched. Returns key, cert, CN."""
    token = demo.manage("add_station", station).strip().splitlines()[-1]
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
        .sign(key, hashes.SHA256())
    )
    headers = {"Authorization": f"Bearer {token}"}
    answer = requests.post(
        f"{portal}/api/v1/onboarding-requests",
        headers=headers,
        timeout=10,
        json={
            "device": device,
            "comment": "mosquitto client",
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
        },
    )
    assert answer.status_code == 201, answer.text
    request_id = answer.json()["id"]
    demo.manage("approve_requests", str(request_id), "--wait", "120")
    issued = requests.get(
        f"{portal}/api/v1/onboarding-requests/{request_id}", headers=headers, timeout=10
    ).json()
    assert issued["status"] == "issued", issued
    certificate = x509.load_pem_x509_certificate(issued["certificate"].encode())
    cn = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    key_path, cert_path = folder / "client.key", folder / "client.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_text(issued["certificate"])
    return key_path, cert_path, str(cn)


def test_mosquitto_clients_with_a_portal_certificate_work_through_the_stand_in(
    demo_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A third-party client (`mosquitto_pub`) with a certificate the portal issued: its first
    connection is dropped by JITP, the next one publishes under `things/<thing name>/…`; a
    plain subscriber on the broker behind the stand-in and `mosquitto_sub` with the same
    certificate through the stand-in (its own topic, all the policy allows) both get it.
    Then the demo runs again on the same data folder."""
    assert MOSQUITTO_PUB is not None
    prefix = _prefix()
    demo = DemoRun.scripted(demo_env, prefix=prefix, stations=1, timeout=120, keep_running=True)
    subs: list[Subscriber] = []
    try:
        found = demo.wait_line(STANDIN_LINE, timeout=60)
        ca = demo.wait_line(r"^Broker CA: (\S+)$", timeout=5).group(1)
        portal = demo.wait_line(r"^Admin:\s+(http://\S+)/admin/$", timeout=60).group(1)
        demo.wait_line(r"^All stations connected", timeout=120)
        key, cert, thing = _portal_certificate(demo, portal, f"{prefix}client", "mqtt", tmp_path)
        assert thing == f"{prefix}client:mqtt"  # the demo profile's CN template
        topic = f"things/{thing}/e2e"
        tls = [
            "-h",
            "127.0.0.1",
            "-p",
            found["port"],
            "--cafile",
            ca,
            "--cert",
            str(cert),
            "--key",
            str(key),
            "-i",
            thing,
        ]

        def publish(message: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [MOSQUITTO_PUB, *tls, "-t", topic, "-m", message, "-q", "1"],
                capture_output=True,
                text=True,
                timeout=30,
            )

        first = publish("first")
        assert first.returncode != 0, "JITP must drop the certificate's first connection"

        # 1. mosquitto_pub through the stand-in; a plain subscriber on the broker behind it.
        plain = Subscriber(
            "-h", found["host"], "-p", found["bport"], "-t", topic, "-i", f"{prefix}plain"
        )
        subs.append(plain)
        message = f"hello from mosquitto_pub {uuid.uuid4().hex[:8]}"

        def delivered() -> bool:  # retried until the subscription is in place, no fixed sleep
            result = publish(message)
            assert result.returncode == 0, result.stdout + result.stderr
            return f"{topic} {message}" in plain.lines

        wait_for(
            delivered,
            timeout=30,
            interval=0.5,
            message=f"the message on the plain subscriber (got {plain.lines[-3:]})",
        )

        # 2. mosquitto_sub through the stand-in with the same certificate (so the same client
        # id: one connection at a time, as on AWS) gets what is published on its own topic.
        inbox = f"things/{thing}/downlink"
        through = Subscriber(*tls, "-t", inbox)
        subs.append(through)
        command = f"command {uuid.uuid4().hex[:8]}"

        def received() -> bool:
            subprocess.run(
                [
                    MOSQUITTO_PUB,
                    "-h",
                    found["host"],
                    "-p",
                    found["bport"],
                    "-i",
                    f"{prefix}sender",
                    "-t",
                    inbox,
                    "-m",
                    command,
                    "-q",
                    "1",
                ],
                check=True,
                timeout=30,
            )
            return f"{inbox} {command}" in through.lines

        wait_for(
            received,
            timeout=30,
            interval=0.5,
            message=f"the command through the stand-in (got {through.lines[-3:]})",
        )
    finally:
        demo.stop()
        for sub in subs:
            sub.close()
    assert demo.proc.returncode == 0, demo.output[-4000:]
    assert demo.output.rstrip().endswith("Stopped.")

    # Re-running on the same data folder reuses it: the station keeps its token, the stand-in
    # (fresh AWS state) gets the same CA again, the old device reconnects (a new JITP), and a
    # new station onboards next to it.
    again = DemoRun.scripted(demo_env, prefix=prefix, stations=2, timeout=120)
    try:
        assert again.wait(150) == 0, again.output[-4000:]
    finally:
        again.stop()
    assert "All stations connected (2 of 2" in again.output
    # -v 0: Django 5.2's shell otherwise prints its automatic imports first.
    cas = again.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from signing.models import CertificateAuthority as C; "
        "print(C.objects.count(), C.objects.get().alias)",
    )
    # The generated CA was reused, not replaced.
    assert cas.strip().splitlines()[-1].split() == ["1", "jitp-ca"]
