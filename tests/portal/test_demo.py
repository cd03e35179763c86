"""`manage.py demo`: brings up the admin with the printed credentials, stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, processes_with_data_dir, wait_for


def demo_env(data_dir: Path) -> dict[str, str]:
    """This process's environment without the test's database, broker and secrets: the demo
    makes its own in ``data_dir``."""
    own = {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"}
    own.add("PORTAL_PRODUCTION")
    env = {k: v for k, v in os.environ.items() if k not in own}
    env.update(PORTAL_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_demo_serves_admin_with_printed_credentials_and_stops(tmp_path: Path, signum: int) -> None:
    """Interactive demo with two stations: stand-in, web, worker, beat and two agents run;
    the steps to click are printed; SIGTERM or Ctrl-C (SIGINT) leaves no process behind."""
    env = demo_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", "0", "--stations", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Running."):
                break
        output = "".join(lines)
        url = re.search(r"^Admin:\s+(\S+)$", output, re.M)
        password = re.search(r"^Password:\s+(\S+)$", output, re.M)
        assert url, output
        assert password, output
        assert re.search(r"^User:\s+admin$", output, re.M)
        assert url.group(1).startswith("http://127.0.0.1:")
        assert url.group(1).endswith("/admin/")

        session = requests.Session()
        login_url = url.group(1) + "login/"
        page = session.get(login_url, timeout=10)
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token
        answer = session.post(
            login_url,
            data={
                "username": "admin",
                "password": password.group(1),
                "csrfmiddlewaretoken": token.group(1),
                "next": "/admin/",
            },
            headers={"Referer": login_url},
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.url == url.group(1)
        assert "Stations, certificates and AWS IoT" in answer.text  # the admin index
        assert "Log out" in answer.text
        css = session.get(url.group(1).replace("/admin/", "/static/admin/css/base.css"), timeout=10)
        assert css.status_code == 200  # the demo turns DEBUG on for its web server

        assert "AWS provisioning > AWS IoT / JITP settings" in output  # the steps to click
        assert "Install AWS MQTT device" in output
        children = set(processes_with_data_dir(tmp_path)) - {proc.pid}
        commands = [
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            for pid in children
        ]
        assert sum("-m localaws" in c for c in commands) == 1
        assert sum("-m fleet_agent run" in c for c in commands) == 2
        assert len(children) >= 6  # stand-in, web, worker, beat, 2 agents (+ worker's pool)
        for station in ("demo-st-001", "demo-st-002"):
            token = tmp_path / "demo" / "stations" / station / "token"
            assert token.stat().st_mode & 0o777 == 0o600
        worker_log_path = tmp_path / "demo-logs" / "worker.log"
        wait_for(
            lambda: "ready." in worker_log_path.read_text(),
            timeout=60,
            message="the demo's Celery worker to be ready",
        )
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=40)
        assert proc.returncode == 0, rest
        assert rest.strip().endswith("Stopped.")
        wait_for(
            lambda: processes_with_data_dir(tmp_path) == [],
            timeout=10,
            message="every child of the demo to exit",
        )
        worker_log = (tmp_path / "demo-logs" / "worker.log").read_text()
        assert "ready." in worker_log
        assert "Warm shutdown" in worker_log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be"),
        (["--scripted", "--stations", "0"], "--scripted needs at least one station"),
        (["--broker", "nowhere"], "--broker must be HOST:PORT or 'embedded'"),
        (["--mqtt-port", "-1"], "--mqtt-port must be"),
        (["--timeout", "0"], "--timeout must be"),
        (["--station-prefix", "a b"], "--station-prefix must be"),
    ],
)
def test_demo_rejects_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    env = dict(os.environ, PORTAL_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.e2e
def test_scripted_demo_timeout_exits_1_naming_the_stuck_stations(tmp_path: Path) -> None:
    """With no time to onboard, the scripted demo fails with one sentence on stderr that names
    the stations still waiting, and stops every child."""
    env = demo_env(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "demo",
            "--scripted",
            "--stations",
            "1",
            "--port",
            "0",
            "--timeout",
            "0.5",
            "--station-prefix",
            "late-",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    sentence = r"Timed out after 0\.5 s; [A-Za-z ]+: late-001\b"
    assert re.search(sentence, result.stderr), result.stderr
    assert "All stations connected" not in result.stdout
    assert result.stdout.rstrip().endswith("Stopped.")
    wait_for(
        lambda: processes_with_data_dir(tmp_path) == [],
        timeout=10,
        message="every child of the demo to exit",
    )
