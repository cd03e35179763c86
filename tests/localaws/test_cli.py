"""`python -m localaws` as the demo and other processes run it, and an external broker."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from localaws import LocalAws
from localaws.front import TokenBucket

from .helpers import PlainSubscriber, device, jitp_template, make_ca, probe, register_ca, unique

ROOT = Path(__file__).resolve().parents[2]


def _read_lines(proc: subprocess.Popen, n: int, timeout: float = 120) -> dict[str, str]:
    """The first `n` KEY=VALUE lines (a reader thread, so a silent process cannot hang us)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    out: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(out) < n:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        key, _, value = line.strip().partition("=")
        out[key] = value
    return out


@pytest.mark.integration
def test_cli_prints_contract_lines_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localaws",
            "--port",
            "0",
            "--mqtt-port",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        lines = _read_lines(proc, 4)
        assert lines["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert lines["MQTT_ENDPOINT"].endswith("-ats.iot.eu-west-1.amazonaws.com")
        assert Path(lines["BROKER_CA"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        iot = boto3.client(
            "iot",
            endpoint_url=lines["AWS_ENDPOINT_URL"],
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        assert (
            iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
            == lines["MQTT_ENDPOINT"]
        )
        with socket.create_connection(("127.0.0.1", int(lines["MQTT_PORT"])), timeout=5):
            pass
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def run_localaws(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m localaws`` with ``args``, until it exits (a refusal is expected)."""
    return subprocess.run(
        [sys.executable, "-m", "localaws", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
def test_cli_bad_argument_is_one_sentence():
    res = run_localaws("--broker", "nonsense")
    assert res.returncode == 2
    assert "--broker must be HOST:PORT or 'embedded'" in res.stderr


def _mosquitto_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.integration
@pytest.mark.skipif(not _mosquitto_up(), reason="no Mosquitto on 127.0.0.1:1883")
def test_external_mosquitto_backend(tmp_path):
    with LocalAws(broker="127.0.0.1:1883", state_dir=tmp_path / "state", jitp_rate=0) as aws:
        iot = boto3.client(
            "iot",
            endpoint_url=aws.endpoint_url,
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        ca = make_ca(unique("ca"))
        register_ca(iot, ca, template_body=jitp_template())
        cn = unique("mosq-backend")
        dev = device(tmp_path, ca, cn)
        assert probe(aws, dev, cn) == "dropped"
        sub = PlainSubscriber("127.0.0.1", 1883, f"things/{cn}/#")
        try:
            from .helpers import PahoDevice

            client = PahoDevice(aws, dev, cn)
            assert client.connect()
            client.client.publish(f"things/{cn}/up", b"via-mosquitto", qos=1).wait_for_publish(10)
            client.close()
            assert (f"things/{cn}/up", b"via-mosquitto") in sub.wait()
        finally:
            sub.close()


def test_token_bucket_refills_at_rate():
    now = [100.0]
    bucket = TokenBucket(10, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(15)) == 10  # burst = one second's worth
    now[0] += 0.25
    assert sum(bucket.take() for _ in range(5)) == 2
    assert all(TokenBucket(0).take() for _ in range(1000))


@pytest.mark.integration
def test_jitp_rate_limit(tmp_path):
    # 0.05/s: one token now, the next in 20 s, so the burst below is throttled even on a
    # loaded machine.
    with LocalAws(state_dir=tmp_path / "state", jitp_rate=0.05) as aws:
        iot = boto3.client(
            "iot",
            endpoint_url=aws.endpoint_url,
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        ca = make_ca(unique("ca"))
        register_ca(iot, ca, template_body=jitp_template())
        devs = [device(tmp_path, ca, unique("burst")) for _ in range(3)]
        for d in devs:
            assert probe(aws, d, d.name) == "dropped"
        assert aws.stats.jitp_registrations == 1
        assert aws.stats.throttled == 2
        assert probe(aws, devs[0], devs[0].name) == "connack:0"
        assert probe(aws, devs[1], devs[1].name) == "dropped"  # still throttled
        assert aws.stats.throttled == 3


@pytest.mark.integration
def test_cli_port_in_use_fails_with_a_sentence():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_localaws("--port", str(port), "--mqtt-port", "0")
    assert res.returncode == 1
    assert "localaws: cannot start:" in res.stderr
    assert "AWS_ENDPOINT_URL" not in res.stdout
