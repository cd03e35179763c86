"""The README's steps, literally, on a fresh machine: a new database, ``add_access_key`` and
``setup_jitp`` straight after it (the AWS service is on by default), a plain
``celery -A portal worker`` (no -Q), a signing profile, a station, a CSR through the station
API, ``approve_requests --wait``: an issued certificate, and the CA registered on AWS's side.

Everything runs as separate processes on the test's own data folder (and, in CI, its own
PostgreSQL database and Redis number; see ``demo_env``): nothing shares the test's database.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT, wait_for

ACCESS_KEY_ID = "AKIAREADMESTEPS00001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYREADMEKEY1"
CA_PASSWORD = "readme-ca-password-1"


class Processes:
    """The long-running processes of the test (stand-in, worker, web), stopped at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Path:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            self.procs.append(
                subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
        return log

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    group = Processes(tmp_path)
    yield group
    group.stop()


def manage(env: dict[str, str], *args: str, input_: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        input=input_,
    )
    assert result.returncode == 0, f"manage.py {args[0]}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, token: str, body: object = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_readme_steps_reach_an_issued_certificate(
    demo_env: dict[str, str], processes: Processes, tmp_path: Path
) -> None:
    env = dict(demo_env)
    # The local AWS stand-in plays the AWS account, with the JITP role its owner made.
    standin_log = processes.start(
        "localaws",
        [
            sys.executable,
            "-m",
            "localaws",
            "--port",
            "0",
            "--mqtt-port",
            "0",
            "--state-dir",
            str(tmp_path / "localaws"),
            "--create-role",
            "readme-jitp",
        ],
        env,
    )
    lines = wait_for(
        lambda: "JITP_ROLE_ARN=" in standin_log.read_text() and standin_log.read_text(),
        timeout=90,
        message="the AWS stand-in to print its endpoint and role",
    )
    values = dict(line.split("=", 1) for line in str(lines).splitlines() if "=" in line)
    endpoint, role_arn = values["AWS_ENDPOINT_URL"], values["JITP_ROLE_ARN"]
    env.update(AWS_ENDPOINT_URL=endpoint, CA_PASSWORD=CA_PASSWORD)

    manage(env, "migrate", "--noinput")
    out = manage(
        env, "add_access_key", "--id", ACCESS_KEY_ID, "--store-for", "1d", input_=SECRET + "\n"
    )
    assert SECRET not in out
    # Straight after the key: no switch to find first, the AWS service is on by default.
    out = manage(
        env,
        "setup_jitp",
        "--access-key-id",
        ACCESS_KEY_ID,
        "--role-arn",
        role_arn,
        "--generate-ca",
        "CN=Fleet CA, O=Acme, C=DE",  # as people type it
    )
    assert "Data endpoint: " in out, out
    iot = boto3.client(
        "iot",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET,
    )
    registered = iot.list_ca_certificates()["certificates"]
    assert [c["status"] for c in registered] == ["ACTIVE"]

    worker_log = processes.start(
        "worker", [sys.executable, "-m", "celery", "-A", "portal", "worker", "-l", "INFO"], env
    )
    port = free_port()
    processes.start(
        "web", [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], env
    )
    base = f"http://127.0.0.1:{port}"

    manage(
        env, "add_signing_profile", "--name", "fleet", "--ca-alias", "jitp-ca", "--country", "DE"
    )
    token = manage(env, "add_station", "st-readme").strip().splitlines()[-1]

    wait_for(lambda: _answers(f"{base}/healthz"), timeout=90, message="the web server")
    key = ec.generate_private_key(ec.SECP384R1())  # P-384: accepted by the default profile
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
        .sign(key, hashes.SHA384())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    status, created = http(
        "POST", f"{base}/api/v1/onboarding-requests", token, {"device": "aws", "csr": csr}
    )
    assert status == 201, created
    assert created["status"] == "pending"

    wait_for(lambda: "ready." in worker_log.read_text(), timeout=90, message="the plain worker")
    out = manage(env, "approve_requests", "--all-pending", "--wait", "180")
    assert "Issued 1 of 1." in out, out + worker_log.read_text()[-3000:]

    status, issued = http("GET", f"{base}/api/v1/onboarding-requests/{created['id']}", token)
    assert status == 200
    assert issued["status"] == "issued"
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    assert cert.issuer.rfc4514_string() == "CN=Fleet CA,O=Acme,C=DE"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "st-readme:aws"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert time.time() < cert.not_valid_after_utc.timestamp()
