"""Benchmark: the idle station agent with one device connected, as a station runs it.

    .venv/bin/python benchmarks/agent_idle.py [--idle 60] [--poll-interval 30]

The agent runs as its own process (``python -m fleet_agent run``, what the systemd unit
starts) against the test fake portal (throw-away CA) and a private Mosquitto whose TLS
listener requires the device certificate. Default timings: the portal's poll interval and
heartbeat (30 s each).

1. Onboarding (not timed): a fresh state directory, the request approved, the device
   connected; the agent is stopped with SIGTERM.
2. Start-to-connected: the agent started again on the onboarded state; from ``exec`` until
   a subscriber on the broker sees the device's first heartbeat (sent right after CONNACK).
3. Idle: after a short settling pause, ``--idle`` seconds with the device connected:
   CPU share of one core (utime + stime from /proc/<pid>/stat), resident memory (VmRSS,
   peak VmHWM, and PSS / USS from /proc/<pid>/smaps_rollup), threads.

Targets: RSS <= 30 MiB, CPU <= 0.2 % of one core, connected within 2 s. Exit status 1 when
one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from tests.agent.helpers import ENDPOINT, Broker, FakePortal, TestCA  # noqa: E402

KEY_PASSWORD = "benchmark key password"
TARGET_RSS_MIB = 30.0
TARGET_CPU_PERCENT = 0.2
TARGET_CONNECT_S = 2.0


def _proc_kib(pid: int, field: str, name: str = "status") -> int:
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fleet_agent", *args], env=env, stdout=out, stderr=out
        )


class Heartbeats:
    """A plain MQTT subscriber on the broker: when the device's heartbeats arrive."""

    def __init__(self, port: int) -> None:
        self.seen: list[float] = []
        self.event = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_connect = lambda c, *_: c.subscribe("things/+/heartbeat", qos=0)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, *_a: object) -> None:
        self.seen.append(time.monotonic())
        self.event.set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--poll-interval", type=int, default=30)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agent-idle-"))
    (work / "ca").mkdir()
    ca = TestCA(work / "ca")
    portal = FakePortal(ca, lifetime=30 * 86400)
    broker = Broker(work / "broker", ca)
    broker.start()
    device = {
        "name": "aws",
        "endpoint": ENDPOINT,
        "port": broker.tls_port,
        "key_password": KEY_PASSWORD,
        "key_type": "ec-p256",
        "renew_after": None,
        "heartbeat_interval": args.heartbeat,
    }
    token = portal.add_station("st-idle", [device], poll_interval=args.poll_interval)
    token_file = work / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    state_dir = work / "state"
    log = work / "agent.log"
    run_args = [
        "run",
        "--portal",
        portal.url,
        "--token-file",
        str(token_file),
        "--state-dir",
        str(state_dir),
        "--broker-ca",
        str(ca.path),
        "--connect-host",
        f"127.0.0.1:{broker.tls_port}",
    ]
    watch = Heartbeats(broker.plain_port)
    proc: subprocess.Popen[bytes] | None = None
    try:
        # 1. Onboard (not timed).
        proc = _spawn([*run_args, "--request-poll-max", "1"], log)
        deadline = time.monotonic() + 60
        while not portal.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        portal.approve_all()
        if not watch.event.wait(60):
            print(f"the device never connected; see {log}", file=sys.stderr)
            return 1
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

        # 2. Start-to-connected, already onboarded.
        watch.event.clear()
        started = time.monotonic()
        proc = _spawn(run_args, log)
        if not watch.event.wait(30):
            print(f"the device did not reconnect; see {log}", file=sys.stderr)
            return 1
        connect_s = watch.seen[-1] - started

        # 3. Idle.
        time.sleep(args.settle)
        pid = proc.pid
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        cpu1, t1 = _cpu_seconds(pid), time.monotonic()
        cpu_percent = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        rss = _proc_kib(pid, "VmRSS") / 1024
        hwm = _proc_kib(pid, "VmHWM") / 1024
        pss = _proc_kib(pid, "Pss", "smaps_rollup") / 1024
        uss = (
            _proc_kib(pid, "Private_Clean", "smaps_rollup")
            + _proc_kib(pid, "Private_Dirty", "smaps_rollup")
        ) / 1024
        threads = len(os.listdir(f"/proc/{pid}/task"))
        status = json.loads((state_dir / "status.json").read_text())["devices"][0]
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        watch.close()
        broker.stop()
        portal.close()

    print(f"fleet-agent idle benchmark  ({platform.python_version()}, {os.cpu_count()} cores)")
    print(f"  device status          {status['status']} (connected={status['connected']})")
    print(f"  start-to-connected     {connect_s:6.2f} s     target <= {TARGET_CONNECT_S} s")
    print(f"  RSS (VmRSS)            {rss:6.1f} MiB   target <= {TARGET_RSS_MIB} MiB")
    print(f"  RSS peak (VmHWM)       {hwm:6.1f} MiB")
    print(f"  PSS / USS              {pss:6.1f} / {uss:.1f} MiB")
    print(
        f"  CPU over {args.idle:.0f} s         {cpu_percent:6.3f} % of one core"
        f"   target <= {TARGET_CPU_PERCENT} %"
    )
    print(f"  threads                {threads}")
    ok = (
        rss <= TARGET_RSS_MIB
        and cpu_percent <= TARGET_CPU_PERCENT
        and connect_s <= TARGET_CONNECT_S
    )
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
