"""End to end: the agent as a station gets it. Its wheel, built from agent/ and installed
alone in a new venv, enrols with a one-time code, onboards against the running portal
(the demo: web, worker, beat, stand-in) and connects through the stand-in; renewals need
the proof of the current key and the renewal point; an expired certificate leads to a
recovery request that staff approve, after which the device reconnects."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from fleet_agent.keys import build_csr, generate_private_key, load_private_key, renewal_proof
from tests.agent.test_agent_wheel import ALLOWED, agent_venv, installed_names
from tests.conftest import wait_for
from tests.e2e.conftest import DemoRun, needs_mosquitto_clients
from tests.e2e.test_demo_e2e import STANDIN_LINE

pytestmark = [needs_mosquitto_clients, pytest.mark.slow, pytest.mark.timeout(900)]

KEY_PASSWORD = "e2e-" + uuid.uuid4().hex


def _shell(demo: DemoRun, code: str) -> str:
    return demo.manage("shell", "-v", "0", "-c", code).strip().splitlines()[-1]


def _status(bin_dir: Path, state_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [bin_dir / "fleet-agent", "status", "--state-dir", state_dir, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return doc["devices"][0] if doc["devices"] else {}


def test_wheel_agent_enrols_onboards_renews_with_proof_and_recovers(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:6]}-"
    demo = DemoRun.scripted(demo_env, prefix=prefix, stations=1, timeout=150, keep_running=True)
    # The station's install, while the demo starts: the wheel alone in a new venv.
    built: dict[str, Any] = {}

    def build() -> None:
        try:
            (tmp_path / "station").mkdir()
            built["bin"] = agent_venv(tmp_path / "station")
        except BaseException as exc:  # noqa: BLE001 - reported below
            built["error"] = exc

    builder = threading.Thread(target=build)
    builder.start()
    agent: subprocess.Popen[str] | None = None
    log_path = tmp_path / "agent.log"
    try:
        found = demo.wait_line(STANDIN_LINE, timeout=90)
        ca = demo.wait_line(r"^Broker CA: (\S+)$", timeout=5).group(1)
        portal = demo.wait_line(r"^Admin:\s+(http://\S+)/admin/$", timeout=90).group(1)
        demo.wait_line(r"^All stations connected", timeout=150)
        builder.join(400)
        assert "error" not in built, built.get("error")
        bin_dir: Path = built["bin"]
        names = installed_names(bin_dir, tmp_path)
        assert not names & {"django", "boto3", "botocore", "moto", "requests", "celery"}
        assert names <= ALLOWED

        # 1. Staff create the station with an enrolment code; the station enrols with it.
        station = f"{prefix}enrol"
        code = demo.manage("add_station", station, "--enrollment-code").strip().splitlines()[-1]
        token_file = tmp_path / "token"
        enroll = [bin_dir / "fleet-agent", "enroll", "--portal", portal, "--token-file"]
        wrong = subprocess.run(
            [*enroll, token_file, "--code", "AAAA-BBBB-CCCC"], capture_output=True, text=True
        )
        assert wrong.returncode == 1
        assert wrong.stderr.strip().startswith("fleet-agent: the portal does not know this")
        done = subprocess.run([*enroll, token_file, "--code", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert token_file.stat().st_mode & 0o777 == 0o600
        used = subprocess.run(
            [*enroll, tmp_path / "token2", "--code", code], capture_output=True, text=True
        )
        assert used.returncode == 1
        assert "already used" in used.stderr
        token = token_file.read_text().strip()

        # 2. Staff install the MQTT device on it; the agent onboards and connects.
        demo.env = {**demo.env, "DEVICE_CERT_PASSWORD": KEY_PASSWORD}
        demo.manage(
            "fleet_install",
            "--device-name",
            "aws",
            "--profile",
            "demo",
            "--endpoint",
            found["endpoint"],
            "--port",
            found["port"],
            "--stations",
            station,
        )
        state_dir = tmp_path / "state"
        log = log_path.open("w")
        agent = subprocess.Popen(
            [
                bin_dir / "fleet-agent",
                "run",
                "--portal",
                portal,
                "--token-file",
                token_file,
                "--state-dir",
                state_dir,
                "--broker-ca",
                ca,
                "--connect-host",
                f"127.0.0.1:{found['port']}",
                "--poll-interval",
                "2",
                "--request-poll-max",
                "2",
                "--reconnect-max",
                "3",
                "--renewal-retry",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pending = (
            "from signing.models import OnboardingRequest as R; "
            f"print(list(R.objects.filter(station__name={station!r}, status='pending')"
            ".values_list('pk', 'is_renewal')))"
        )
        wait_for(lambda: _shell(demo, pending) != "[]", timeout=90, interval=1, message="a CSR")
        demo.manage("approve_requests", "--all-pending", "--wait", "60")
        wait_for(
            lambda: _status(bin_dir, state_dir).get("connected"),
            timeout=60,
            interval=0.5,
            message=f"the agent connected through the stand-in:\n{log_path.read_text()[-3000:]}",
        )
        first = _status(bin_dir, state_dir)
        assert first["waiting_for"].startswith("nothing; next renewal from")

        # 3. A renewal with the station token alone is refused; so is one before its time.
        url = f"{portal}/api/v1/onboarding-requests"
        headers = {"Authorization": f"Bearer {token}"}
        csr = build_csr(generate_private_key(), "x")
        bare = requests.post(
            url, json={"device": "aws", "csr": csr, "renewal": True}, headers=headers, timeout=10
        )
        assert bare.status_code == 422
        assert bare.json()["code"] == "proof_required"
        current = load_private_key(first["key_path"], KEY_PASSWORD)
        proof = renewal_proof(current, station=station, device="aws", csr_pem=csr, now=time.time())
        early = requests.post(
            url,
            json={"device": "aws", "csr": csr, "renewal": True, "proof": proof},
            headers=headers,
            timeout=10,
        )
        assert early.status_code == 409
        assert early.json()["code"] == "renewal_too_early"

        # 4. Staff force a renewal under a profile whose certificates are born expired: the
        # agent renews (with its proof), finds the new certificate expired and recovers.
        _shell(
            demo,
            "from signing.models import SigningProfile as P; "
            "print(P.objects.filter(name='demo').update(validity_days=0))",
        )
        forced = _shell(
            demo,
            "from signing.models import IssuedCertificate as C; "
            "from signing.services import certificates_force_renewal as f; "
            f"print(f(ids=list(C.objects.filter(device__station__name={station!r}, "
            "status='active').values_list('pk', flat=True))))",
        )
        assert forced == "1"
        recovery = (
            "import json; from signing.models import OnboardingRequest as R; "
            f"print(json.dumps(list(R.objects.filter(station__name={station!r}, "
            "status='pending', is_renewal=False).values_list('pk', 'decided_by_label'))))"
        )
        wait_for(
            lambda: _shell(demo, recovery) != "[]",
            timeout=90,
            interval=1,
            message=f"a recovery request:\n{log_path.read_text()[-3000:]}",
        )
        ((request_id, label),) = json.loads(_shell(demo, recovery))
        assert label == ""  # waiting for staff, not approved by the renewal policy
        wait_for(
            lambda: _status(bin_dir, state_dir).get("renewal_request_id") == request_id,
            timeout=30,
            interval=0.5,
            message="status showing the recovery",
        )
        status = _status(bin_dir, state_dir)
        assert status["replacing"] == "recovery"
        assert "expired" in status["replacing_why"]
        assert status["waiting_for"] == (
            f"staff to approve recovery request {request_id} in the portal"
        )
        _shell(
            demo,
            "from signing.models import SigningProfile as P; "
            "print(P.objects.filter(name='demo').update(validity_days=365))",
        )
        demo.manage("approve_requests", str(request_id), "--wait", "60")

        def reconnected() -> bool:
            now = _status(bin_dir, state_dir)
            return bool(now.get("connected")) and now.get("request_id") == request_id

        wait_for(
            reconnected,
            timeout=60,
            interval=0.5,
            message=f"the device back online:\n{log_path.read_text()[-3000:]}",
        )
        text = log_path.read_text()
        assert "recovery: a new key and an onboarding request that staff must approve" in text
        assert token not in text
        assert KEY_PASSWORD not in text
        assert code not in text
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(30)
        demo.stop()
        builder.join(5)
