"""The ``fleet-agent`` command as an operator or a script uses it (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleet_agent.keys import KeyFileError, load_private_key
from tests.agent.conftest import KEY_PASSWORD, device_entry
from tests.agent.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleet_agent", *args]


pytestmark = pytest.mark.integration  # every test here runs the agent's command in a subprocess


def run_agent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        agent_cmd(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def spawn_agent(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        agent_cmd(*args),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def station(tmp_path, portal):
    token = portal.add_station("st-042", [device_entry(None)], poll_interval=1)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    return token, token_file, tmp_path / "state"


def base_args(portal, token_file, state_dir) -> list[str]:
    return [
        "run",
        "--portal",
        portal.url,
        "--token-file",
        str(token_file),
        "--state-dir",
        str(state_dir),
        "--request-poll-max",
        "0.3",
        "--poll-interval",
        "1",
    ]


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def saved_request_id(state_dir: Path) -> int | None:
    """The onboarding request id the agent has saved for its device, once it has."""
    try:
        state = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state.get("devices", {}).get("aws", {}).get("request_id")


def test_bad_token_exits_nonzero_with_a_sentence(tmp_path, portal):
    portal.add_station("st-1", [device_entry(None)])
    bad = tmp_path / "token"
    bad.write_text("not-the-token")
    res = run_agent(
        "run", "--portal", portal.url, "--token-file", str(bad), "--state-dir", str(tmp_path / "s")
    )
    assert res.returncode == 3
    assert last_line(res.stderr) == (
        "fleet-agent: the portal rejected the station token (401); check --token-file."
    )
    assert "not-the-token" not in res.stderr + res.stdout


def test_missing_token_file_is_a_usage_error(tmp_path, portal):
    res = run_agent(
        "run",
        "--portal",
        portal.url,
        "--token-file",
        str(tmp_path / "nope"),
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert res.returncode == 2
    assert "cannot read the token file" in last_line(res.stderr)


def test_unreachable_portal_retries_with_backoff_and_says_so(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    token = tmp_path / "token"
    token.write_text("t")
    res = run_agent(
        "run",
        "--portal",
        url,
        "--token-file",
        str(token),
        "--state-dir",
        str(tmp_path / "s"),
        "--portal-retry-max",
        "1",
        "--timeout",
        "3.5",
    )
    assert res.returncode == 1
    lines = [
        ln for ln in res.stderr.splitlines() if f"portal unreachable at {url}, retrying in" in ln
    ]
    assert len(lines) >= 2, res.stderr


def test_corrupt_state_file_stops_without_making_a_key(tmp_path, portal, station):
    _token, token_file, state_dir = station
    state_dir.mkdir()
    (state_dir / "state.json").write_text('{"version": 1, "devices": {"aws": ')
    res = run_agent(*base_args(portal, token_file, state_dir), "--timeout", "5")
    assert res.returncode == 4
    assert "is corrupt (not valid JSON)" in last_line(res.stderr)
    assert not list(state_dir.rglob("*.pem"))
    assert portal.requests == {}
    # Valid JSON but not a state we wrote is just as corrupt.
    (state_dir / "state.json").write_text('{"version": 1, "devices": {"aws": {"x": 1}}}')
    res = run_agent(*base_args(portal, token_file, state_dir), "--timeout", "5")
    assert res.returncode == 4
    assert "no boolean 'completed' flag" in last_line(res.stderr)
    res = run_agent("status", "--state-dir", str(state_dir))
    assert res.returncode == 4
    res = run_agent("reset", "--state-dir", str(state_dir), "--discard-corrupt")
    assert res.returncode == 0
    assert not (state_dir / "state.json").exists()


def test_once_onboards_and_restart_does_not_onboard_again(tmp_path, portal, station):
    _token, token_file, state_dir = station
    proc = spawn_agent(*base_args(portal, token_file, state_dir), "--once", "--timeout", "20")
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.approve_all()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    state = json.loads((state_dir / "state.json").read_text())
    entry = state["devices"]["aws"]
    assert entry["completed"] is True
    assert entry["thing_name"] == "st-042-aws"
    assert entry["request_id"] == 1
    # The key: mode 0600, encrypted PKCS#8, useless without the password.
    key_path = Path(entry["key_path"])
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert key_path.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    with pytest.raises(KeyFileError):
        load_private_key(key_path, "wrong password")
    load_private_key(key_path, KEY_PASSWORD)
    assert (state_dir / "state.json").stat().st_mode & 0o777 == 0o600
    key_bytes = key_path.read_bytes()
    # Second run: nothing new is requested, the key is untouched.
    res = run_agent(*base_args(portal, token_file, state_dir), "--once", "--timeout", "10")
    assert res.returncode == 0, res.stderr
    assert len(portal.requests) == 1
    assert key_path.read_bytes() == key_bytes
    # status shows it; reset makes the next run onboard again on purpose.
    res = run_agent("status", "--state-dir", str(state_dir))
    assert res.returncode == 0
    assert "agent: not running" in res.stdout
    assert "aws: status=stopped connected=false completed=true thing=st-042-aws request=1\n" in (
        res.stdout
    )
    res = run_agent("reset", "--state-dir", str(state_dir), "--device", "aws")
    assert res.returncode == 0, res.stderr
    assert not key_path.exists()
    proc = spawn_agent(*base_args(portal, token_file, state_dir), "--once", "--timeout", "20")
    assert wait_for(lambda: len(portal.requests) == 2, 10)
    portal.approve_all()
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert len(portal.issued()) == 2


def test_kill_mid_onboarding_then_restart_yields_exactly_one_certificate(tmp_path, portal, station):
    _token, token_file, state_dir = station
    proc = spawn_agent(*base_args(portal, token_file, state_dir))
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    assert wait_for(lambda: saved_request_id(state_dir), 10)
    key_path = state_dir / "devices" / "aws" / "key-1.pem"
    key_bytes = key_path.read_bytes()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    # Restart while still pending: same key, same request.
    proc = spawn_agent(*base_args(portal, token_file, state_dir), "--once", "--timeout", "20")
    assert wait_for(
        lambda: sum(1 for c in portal.calls if c == ("GET", "/api/v1/onboarding-requests/1")) > 3,
        10,
    )
    portal.approve_all()
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert len(portal.requests) == 1
    assert len(portal.issued()) == 1
    assert key_path.read_bytes() == key_bytes


def test_lost_request_id_is_recovered_by_resubmitting_the_same_key(tmp_path, portal, station):
    """Killed after the POST but before the id was saved: the portal returns the same request."""
    _token, token_file, state_dir = station
    proc = spawn_agent(*base_args(portal, token_file, state_dir))
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    assert wait_for(lambda: saved_request_id(state_dir), 10)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    state = json.loads((state_dir / "state.json").read_text())
    del state["devices"]["aws"]["request_id"]
    (state_dir / "state.json").write_text(json.dumps(state))
    proc = spawn_agent(*base_args(portal, token_file, state_dir), "--once", "--timeout", "20")
    # The restarted agent submits the same key again and gets the same request back.
    assert wait_for(lambda: portal.calls.count(("POST", "/api/v1/onboarding-requests")) == 2, 10)
    portal.approve_all()
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert len(portal.requests) == 1
    assert len(portal.issued()) == 1


def test_rejected_request_fails_once_with_reason(tmp_path, portal, station):
    _token, token_file, state_dir = station
    proc = spawn_agent(*base_args(portal, token_file, state_dir), "--once", "--timeout", "20")
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.reject(1, "unknown station")
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "onboarding request 1 was rejected: unknown station" in err


def test_config_file_supplies_options_and_flags_override(tmp_path, portal, station):
    _token, token_file, state_dir = station
    cfg = tmp_path / "agent.json"
    cfg.write_text(
        json.dumps(
            {
                "portal": "http://127.0.0.1:1",  # overridden by the flag below
                "token-file": str(token_file),
                "state_dir": str(state_dir),
                "request-poll-max": 0.3,
                "once": True,
                "timeout": 20,
            }
        )
    )
    proc = spawn_agent("run", "--config", str(cfg), "--portal", portal.url)
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.approve_all()
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    cfg.write_text(json.dumps({"no-such-option": 1}))
    res = run_agent("run", "--config", str(cfg))
    assert res.returncode == 2
    assert "unknown key 'no-such-option'" in last_line(res.stderr)


def test_second_agent_on_same_state_dir_is_refused(tmp_path, portal, station):
    _token, token_file, state_dir = station
    proc = spawn_agent(*base_args(portal, token_file, state_dir))
    try:
        assert wait_for(lambda: len(portal.requests) == 1, 10)
        res = run_agent(*base_args(portal, token_file, state_dir))
        assert res.returncode == 2
        assert "another fleet-agent is already running" in last_line(res.stderr)
        res = run_agent("reset", "--state-dir", str(state_dir))
        assert res.returncode == 2
        assert "Stop it before a reset." in last_line(res.stderr)
        assert wait_for(
            lambda: (
                '"status": "awaiting_approval"'
                in run_agent("status", "--state-dir", str(state_dir), "--json").stdout
            ),
            10,
        )
        doc = json.loads(run_agent("status", "--state-dir", str(state_dir), "--json").stdout)
        assert doc["agent_running"] is True
        assert doc["devices"][0]["request_id"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert len(portal.requests) == 1


def test_run_exit_when_connected_against_real_broker(tmp_path, portal, broker, ca):
    from tests.agent.helpers import Subscriber

    token = portal.add_station("st-cli", [device_entry(broker)], poll_interval=1)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    proc = spawn_agent(
        *base_args(portal, token_file, tmp_path / "state"),
        "--broker-ca",
        str(ca.path),
        "--connect-host",
        f"127.0.0.1:{broker.tls_port}",
        "--exit-when-connected",
        "--timeout",
        "25",
        "--log-level",
        "DEBUG",
    )
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.approve_all()
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "things/st-cli-aws/heartbeat" in sub.topics_seen()
    assert KEY_PASSWORD not in err
    assert token not in err
    st = next(iter(portal.stations.values()))
    assert st.reports[-1]["devices"][0]["status"] == "connected"
    assert st.reports[-1]["agent_version"] == "0.1.0"
    sub.close()
