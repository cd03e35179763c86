"""Benchmark: one station agent's uplink over one MQTT/TLS connection at QoS 1.

    /work/venv/bin/python benchmarks/uplink_throughput.py [--messages 20000]
        [--limited-messages 1500] [--outage 10] [--outage-rate 50] [--broker auto]

Runs the real ``fleet_agent.Agent`` in process (onboarded against the test fake portal
with a throw-away CA) against a private broker on free ports: Mosquitto with a TLS
listener that requires the client certificate when ``/usr/sbin/mosquitto`` exists, else the
local AWS IoT stand-in (``localaws``: its MQTT/TLS front, JITP of the test CA, in front of
its embedded broker; there the outage takes the front down, the backend broker stays).
A QoS 1 subscriber (``mosquitto_sub`` in its own process, persistent session, so it costs
the agent's process nothing and survives the outage) counts distinct message ids.

Scenarios, each printed as a row of one table next to the reference LPWAN connector's
published limits:

(a) limiter off: ``--messages`` points queued as fast as the caller can, time until the
    subscriber holds every one of them (enqueue -> disk queue -> PUBLISH -> PUBACK -> broker
    -> subscriber).
(b) limiter on: a backlog of ``--limited-messages`` points drained at AWS's per-connection
    limits. Every PUBLISH the agent writes (uplinks and QoS 0 heartbeats) is time-stamped;
    a quota violation is any one-second window with more than 100 publishes or 512 KiB.
(c) outage: points offered at ``--outage-rate``/s; after a third of the run the broker is
    stopped for ``--outage`` s, then started again; lost = offered - distinct ids received.
    The drain after the reconnect is checked against the same quota.

Exit status 1 when a target is missed (a < 5,000 msg/s, any violation, any loss).

One file on purpose: anyone can rerun it with one command, with no helper modules to find.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402

from fleet_agent import mqtt_link  # noqa: E402
from fleet_agent.agent import Agent  # noqa: E402
from fleet_agent.config import AgentOptions  # noqa: E402
from tests.agent.helpers import (  # noqa: E402
    ENDPOINT,
    MOSQUITTO,
    Broker,
    FakePortal,
    TestCA,
    wait_for,
)

LIMIT_MSGS = 100
LIMIT_BYTES = 512 * 1024
REFERENCE = {
    "name": "reference LPWAN connector (published)",
    "rate": "1,000 msg/s over a pool of 10 clients (100/client)",
    "qos": "0",
    "offline": "lost while offline",
}
_VALUE_RE = re.compile(rb'"value":(\d+)')


# --------------------------------------------------------------------------- publish log
class PublishLog:
    """Every PUBLISH the agent's MQTT clients write: (monotonic time, payload bytes, topic)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, str]] = []
        self._orig = mqtt_link.RoutedClient.publish
        log = self

        def publish(client: Any, topic: str, payload: Any = None, *a: Any, **kw: Any) -> Any:
            info = log._orig(client, topic, payload, *a, **kw)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                log.events.append((time.monotonic(), len(payload or b""), topic))
            return info

        mqtt_link.RoutedClient.publish = publish  # type: ignore[method-assign]

    def since(self, t0: float, t1: float = float("inf")) -> list[tuple[float, int, str]]:
        return [e for e in self.events if t0 <= e[0] <= t1]


def worst_window(events: list[tuple[float, int, str]], span: float = 1.0) -> tuple[int, int]:
    """Most publishes and most payload bytes in any sliding window of ``span`` seconds."""
    worst_n = worst_b = total = start = 0
    for end, (t, size, _topic) in enumerate(events):
        total += size
        while events[start][0] <= t - span:
            total -= events[start][1]
            start += 1
        worst_n = max(worst_n, end - start + 1)
        worst_b = max(worst_b, total)
    return worst_n, worst_b


def violations(events: list[tuple[float, int, str]]) -> int:
    """Publishes that end a one-second window over the quota (0 = the quota was kept)."""
    count = total = start = 0
    bad = 0
    for end, (t, size, _topic) in enumerate(events):
        total += size
        while events[start][0] <= t - 1.0:
            total -= events[start][1]
            start += 1
        count = end - start + 1
        if count > LIMIT_MSGS or total > LIMIT_BYTES:
            bad += 1
    return bad


# --------------------------------------------------------------------------- subscriber
class CountingSubscriber:
    """``mosquitto_sub`` at QoS 1 with a persistent session; counts ids by run tag."""

    def __init__(self, host: str, port: int, topic: str, client_id: str) -> None:
        self.ids: dict[str, set[int]] = {}
        self.total: dict[str, int] = {}
        self.last_arrival = 0.0
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                host,
                "-p",
                str(port),
                "-q",
                "1",
                "-c",
                "-i",
                client_id,
                "-k",
                "5",
                "-t",
                topic,
                "-F",
                "%t %p",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            topic, _, payload = line.partition(b" ")
            run = topic.rsplit(b"/", 1)[-1].decode()
            m = _VALUE_RE.search(payload)
            if not m:
                continue
            with self._lock:
                self.ids.setdefault(run, set()).add(int(m.group(1)))
                self.total[run] = self.total.get(run, 0) + 1
                self.last_arrival = time.monotonic()

    def distinct(self, run: str) -> int:
        with self._lock:
            return len(self.ids.get(run, ()))

    def received(self, run: str) -> int:
        with self._lock:
            return self.total.get(run, 0)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# --------------------------------------------------------------------------- brokers
@dataclass
class Setup:
    kind: str
    ca: TestCA
    portal: FakePortal
    broker_ca: str
    tls_port: int
    endpoint: str
    sub_host: str
    sub_port: int
    stop_broker: Any
    start_broker: Any
    close: Any
    notes: list[str] = field(default_factory=list)


def mosquitto_setup(base: Path) -> Setup:
    (base / "ca").mkdir()
    ca = TestCA(base / "ca")
    portal = FakePortal(ca)
    broker = Broker(base / "broker", ca)
    broker.start()

    def close() -> None:
        broker.stop()
        portal.close()

    return Setup(
        "mosquitto",
        ca,
        portal,
        str(ca.path),
        broker.tls_port,
        ENDPOINT,
        "127.0.0.1",
        broker.plain_port,
        broker.stop,
        broker.start,
        close,
    )


def localaws_setup(base: Path) -> Setup:
    """The stand-in's TLS front (JITP of the test CA) before its embedded broker."""
    import json

    from localaws import LocalAws

    (base / "ca").mkdir()
    ca = TestCA(base / "ca")
    portal = FakePortal(ca)
    from localaws.broker import BrokerThread

    backend = BrokerThread().start()
    state = {
        "aws": LocalAws(
            region="eu-west-1",
            state_dir=base / "aws",
            jitp_rate=0,
            broker=("127.0.0.1", backend.port),
        ).start()
    }
    aws = state["aws"]
    iot = aws.boto3_client("iot")
    role = aws.create_jitp_role("bench-jitp")
    template = {
        "Parameters": {
            "AWS::IoT::Certificate::CommonName": {"Type": "String"},
            "AWS::IoT::Certificate::Id": {"Type": "String"},
        },
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "Properties": {"ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"}},
            },
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {
                    "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                    "Status": "ACTIVE",
                },
            },
            "policy": {
                "Type": "AWS::IoT::Policy",
                "Properties": {
                    "PolicyDocument": json.dumps(
                        {
                            "Version": "2012-10-17",
                            "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
                        }
                    )
                },
            },
        },
    }
    iot.register_ca_certificate(
        caCertificate=ca.pem,
        certificateMode="SNI_ONLY",
        setAsActive=True,
        allowAutoRegistration=True,
        registrationConfig={"templateBody": json.dumps(template), "roleArn": role},
    )
    host, port = "127.0.0.1", backend.port

    def stop() -> None:
        # The outage is the stand-in's MQTT/TLS front going away (the agent's endpoint);
        # the backend broker with the subscriber's session stays up. moto keeps the CA
        # and the registered certificates in process, so the restarted front knows them.
        state["aws"].stop()

    def start() -> None:
        state["aws"] = LocalAws(
            region="eu-west-1",
            state_dir=base / "aws",
            mqtt_port=aws.mqtt_port,
            broker=("127.0.0.1", backend.port),
            jitp_rate=0,
        ).start()

    def close() -> None:
        state["aws"].stop()
        backend.stop()
        portal.close()

    return Setup(
        "localaws",
        ca,
        portal,
        str(aws.server_ca_path),
        aws.mqtt_port,
        aws.data_endpoint,
        host,
        port,
        stop,
        start,
        close,
    )


# --------------------------------------------------------------------------- agent
def start_agent(setup: Setup, base: Path, name: str, *, rate_limit: bool, inflight: int) -> Agent:
    entry = {
        "name": "bench",
        "endpoint": setup.endpoint,
        "port": setup.tls_port,
        "key_password": "bench-key-password",
        "comment": "uplink benchmark",
        "key_type": "ec-p256",
        "renew_after": None,
        "heartbeat_interval": 5,
        "uplink_topic": "bench/{station}/{device}/{point}",
        "downlink_topic": None,
        "heartbeat_topic": "bench-hb/{thing}",
    }
    token = setup.portal.add_station(name, [entry], poll_interval=30)
    agent = Agent(
        AgentOptions(
            state_dir=base / name,
            portal=setup.portal.url,
            token=token,
            broker_ca=setup.broker_ca,
            connect_host=f"127.0.0.1:{setup.tls_port}",
            request_poll_max=0.3,
            reconnect_max=1.0,
            stable_after=2.0,
            keepalive=5,
            rate_limit=rate_limit,
            inflight_window=inflight,
        )
    )
    agent.start()
    if not wait_for(lambda: any(r.status == "pending" for r in setup.portal.requests.values()), 20):
        raise SystemExit("uplink_throughput: the agent did not submit its CSR.")
    setup.portal.approve_all()
    if not agent.wait_connected(30):
        raise SystemExit(f"uplink_throughput: the agent did not connect: {agent.device_report()}")
    return agent


# --------------------------------------------------------------------------- scenarios
def run_unlimited(
    setup: Setup,
    sub: CountingSubscriber,
    log: PublishLog,
    base: Path,
    n: int,
    inflight: int,
    batch: int,
    tag: str,
) -> dict[str, Any]:
    """``batch`` 1: one ``publish_point`` (one commit) per point; else ``publish_points``."""
    agent = start_agent(setup, base, f"st-{tag}", rate_limit=False, inflight=inflight)
    try:
        t0 = time.monotonic()
        if batch <= 1:
            for i in range(n):
                agent.publish_point("bench", tag, i)
        else:
            for start in range(0, n, batch):
                agent.publish_points(
                    "bench",
                    [{"point": tag, "value": i} for i in range(start, min(n, start + batch))],
                )
        t_enq = time.monotonic()
        ok = wait_for(lambda: sub.distinct(tag) >= n, 120, 0.01)
        t1 = sub.last_arrival if ok else time.monotonic()
        pubs = [e for e in log.since(t0) if e[2].endswith("/" + tag)]
    finally:
        agent.stop()
    return {
        "batch": batch,
        "offered": n,
        "distinct": sub.distinct(tag),
        "received": sub.received(tag),
        "seconds": t1 - t0,
        "rate": sub.distinct(tag) / (t1 - t0),
        "enqueue_rate": n / (t_enq - t0),
        "publish_rate": len(pubs) / max(1e-9, pubs[-1][0] - pubs[0][0]) if pubs else 0.0,
    }


def run_limited(
    setup: Setup, sub: CountingSubscriber, log: PublishLog, agent: Agent, n: int
) -> dict[str, Any]:
    t0 = time.monotonic()
    for i in range(n):
        agent.publish_point("bench", "b", i)
    ok = wait_for(lambda: sub.distinct("b") >= n, n / 50 + 60, 0.05)
    t1 = sub.last_arrival if ok else time.monotonic()
    events = log.since(t0, t1)  # uplinks and heartbeats: AWS counts every PUBLISH
    worst_n, worst_b = worst_window(events)
    return {
        "offered": n,
        "distinct": sub.distinct("b"),
        "received": sub.received("b"),
        "seconds": t1 - t0,
        "rate": sub.distinct("b") / (t1 - t0),
        "worst_count": worst_n,
        "worst_bytes": worst_b,
        "violations": violations(events),
    }


def run_outage(
    setup: Setup, sub: CountingSubscriber, log: PublishLog, agent: Agent, outage: float, rate: float
) -> dict[str, Any]:
    worker = agent.workers["bench"]
    before = after = outage  # offered traffic before, during and after the outage
    stop_at = before + outage + after
    offered = 0
    marks: dict[str, float] = {}
    t0 = time.monotonic()
    while (now := time.monotonic()) - t0 < stop_at:
        elapsed = now - t0
        if "down" not in marks and elapsed >= before:
            marks["down"] = time.monotonic()
            setup.stop_broker()
        if "up" not in marks and elapsed >= before + outage:
            setup.start_broker()
            marks["up"] = time.monotonic()
        while offered < int(elapsed * rate) + 1:
            agent.publish_point("bench", "c", offered)
            offered += 1
        time.sleep(0.005)
    ok = wait_for(lambda: sub.distinct("c") >= offered, offered / 50 + 60, 0.05)
    t_end = sub.last_arrival if ok else time.monotonic()
    reconnected = worker.last_connected
    events = log.since(t0, t_end)
    drain = [e for e in events if e[0] >= marks["up"]]
    worst_n, worst_b = worst_window(events)
    drain_n, _ = worst_window(drain)
    return {
        "offered": offered,
        "distinct": sub.distinct("c"),
        "received": sub.received("c"),
        "lost": offered - sub.distinct("c"),
        "duplicates": sub.received("c") - sub.distinct("c"),
        "outage": marks["up"] - marks["down"],
        "drain_seconds": t_end - marks["up"],
        "drain_publishes": len(drain),
        "drain_worst_count": drain_n,
        "worst_count": worst_n,
        "worst_bytes": worst_b,
        "violations": violations(events),
        "reconnected": reconnected is not None,
        "queue_dropped": agent.queue.dropped("bench"),
    }


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="(a) points, limiter off")
    parser.add_argument(
        "--limited-messages",
        type=int,
        default=1_500,
        help="(b) backlog drained with the limiter on",
    )
    parser.add_argument("--outage", type=float, default=10.0, help="(c) broker down, seconds")
    parser.add_argument(
        "--outage-rate",
        type=float,
        default=50.0,
        help="(c) points offered per second during the outage run",
    )
    parser.add_argument(
        "--inflight",
        type=int,
        default=AgentOptions.inflight_window,
        help="agent's QoS 1 inflight window",
    )
    parser.add_argument(
        "--batch", type=int, default=100, help="(a) second run: points per publish_points call"
    )
    parser.add_argument("--broker", choices=["auto", "mosquitto", "localaws"], default="auto")
    parser.add_argument(
        "--only",
        choices=["a", "b", "c"],
        action="append",
        help="run only these scenarios (repeatable)",
    )
    args = parser.parse_args(argv)
    if shutil.which("mosquitto_sub") is None:
        print(
            "uplink_throughput: mosquitto_sub (mosquitto-clients) is needed for the subscriber.",
            file=sys.stderr,
        )
        return 2
    kind = args.broker
    if kind == "auto":
        kind = "mosquitto" if Path(MOSQUITTO).exists() else "localaws"
    scenarios = set(args.only or ["a", "b", "c"])
    logging.basicConfig(level=logging.ERROR)
    base = Path(tempfile.mkdtemp(prefix="uplink-bench-"))
    setup = mosquitto_setup(base) if kind == "mosquitto" else localaws_setup(base)
    log = PublishLog()
    sub = CountingSubscriber(
        setup.sub_host, setup.sub_port, "bench/#", f"uplink-bench-{os.getpid()}"
    )
    time.sleep(0.5)
    results: dict[str, dict[str, Any]] = {}
    try:
        if "a" in scenarios:
            results["a"] = run_unlimited(
                setup, sub, log, base, args.messages, args.inflight, 1, "a"
            )
            results["a2"] = run_unlimited(
                setup, sub, log, base, args.messages, args.inflight, args.batch, "a2"
            )
        if scenarios & {"b", "c"}:
            agent = start_agent(setup, base, "st-b", rate_limit=True, inflight=args.inflight)
            try:
                if "b" in scenarios:
                    results["b"] = run_limited(setup, sub, log, agent, args.limited_messages)
                if "c" in scenarios:
                    results["c"] = run_outage(setup, sub, log, agent, args.outage, args.outage_rate)
            finally:
                agent.stop()
    finally:
        sub.close()
        setup.close()
        shutil.rmtree(base, ignore_errors=True)
    return report(results, kind, args, setup.notes)


def report(
    results: dict[str, dict[str, Any]], kind: str, args: argparse.Namespace, notes: list[str]
) -> int:
    load = os.getloadavg()
    from importlib.metadata import version

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# uplink store-and-forward benchmark, {stamp}")
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} CPU; Python "
        f"{platform.python_version()}, paho-mqtt {version('paho-mqtt')}, SQLite "
        f"{sqlite3.sqlite_version}; broker: {kind}; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(
        f"# agent inflight window {args.inflight}; one TLS connection, QoS 1, payload ~110 B JSON"
    )
    print()
    print(
        "| run | offered | received (distinct) | lost | dupl. | time | msg/s | worst 1 s "
        "window | quota violations |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for key in ("a", "a2"):
        if key not in results:
            continue
        r = results[key]
        lost = r["offered"] - r["distinct"]
        ok &= lost == 0
        how = (
            "publish_point, 1 commit/point"
            if r["batch"] <= 1
            else f"publish_points, {r['batch']}/commit"
        )
        print(
            f"| (a) limiter off, {how} | {r['offered']:,} | {r['distinct']:,} | {lost} | "
            f"{r['received'] - r['distinct']} | {r['seconds']:.2f} s | **{r['rate']:,.0f}** "
            f"(enqueue {r['enqueue_rate']:,.0f}/s, publish {r['publish_rate']:,.0f}/s) | "
            f"n/a | n/a (limiter off) |"
        )
    if "b" in results:
        r = results["b"]
        lost = r["offered"] - r["distinct"]
        ok &= r["violations"] == 0 and lost == 0
        print(
            f"| (b) limiter on, backlog | {r['offered']:,} | {r['distinct']:,} | {lost} | "
            f"{r['received'] - r['distinct']} | {r['seconds']:.2f} s | **{r['rate']:,.1f}** | "
            f"{r['worst_count']} msgs, {r['worst_bytes'] / 1024:.1f} KiB | "
            f"**{r['violations']}** |"
        )
    if "c" in results:
        r = results["c"]
        ok &= r["violations"] == 0 and r["lost"] == 0
        print(
            f"| (c) {r['outage']:.1f} s broker outage, {args.outage_rate:.0f}/s offered | "
            f"{r['offered']:,} | {r['distinct']:,} | **{r['lost']}** | {r['duplicates']} | "
            f"drain {r['drain_seconds']:.1f} s after restart | drain "
            f"{r['drain_publishes'] / max(r['drain_seconds'], 1e-9):.1f} | "
            f"{r['worst_count']} msgs (drain {r['drain_worst_count']}), "
            f"{r['worst_bytes'] / 1024:.1f} KiB | **{r['violations']}** |"
        )
    if "a" in results:
        ok &= max(results["a"]["rate"], results["a2"]["rate"]) >= 5000
    print(
        f"| {REFERENCE['name']} | | | {REFERENCE['offline']} | | | {REFERENCE['rate']}, "
        f"QoS {REFERENCE['qos']} | | |"
    )
    print()
    if "a" in results:
        per_client = 1000 / 10
        best = max(results["a"]["rate"], results["a2"]["rate"])
        print(
            f"Per connection: this agent {best:,.0f} msg/s at QoS 1 vs the "
            f"reference's {per_client:,.0f} msg/s at QoS 0 "
            f"({best / per_client:,.1f}x); its pool of 10 reaches 1,000."
        )
    if "c" in results:
        r = results["c"]
        print(
            f"Outage: {r['offered']:,} offered, {r['distinct']:,} distinct received, "
            f"lost {r['lost']} (the reference loses everything sent while offline: "
            f"~{args.outage_rate * r['outage']:,.0f} here); queue dropped "
            f"{r['queue_dropped']}; duplicates {r['duplicates']} (QoS 1 redelivery)."
        )
    for note in notes:
        print(note)
    print("targets:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
