"""Manual benchmark: N in-process agents onboard and connect (not collected by pytest).

    python -m tests.agent.bench_agents 1000

Uses the same fake portal and a real Mosquitto as the tests; prints the time to onboard
and connect every station, thread count and idle CPU of the agents' process.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import threading
import time
from pathlib import Path

from fleet_agent.agent import Agent
from fleet_agent.config import AgentOptions
from tests.agent.conftest import device_entry
from tests.agent.helpers import Broker, FakePortal, Subscriber, TestCA, wait_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stations", type=int, nargs="?", default=100)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    (base / "ca").mkdir()
    ca = TestCA(base / "ca")
    portal = FakePortal(ca)
    broker = Broker(base / "broker", ca)
    broker.start()
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    agents = []
    t0 = time.monotonic()
    for i in range(args.stations):
        entry = device_entry(broker, heartbeat_interval=args.heartbeat)
        token = portal.add_station(f"st-{i:04d}", [entry], poll_interval=30)
        opts = AgentOptions(
            state_dir=base / f"st-{i:04d}",
            portal=portal.url,
            token=token,
            broker_ca=str(ca.path),
            connect_host=f"127.0.0.1:{broker.tls_port}",
            request_poll_max=2,
        )
        agent = Agent(opts)
        agent.start()
        agents.append(agent)
    wait_for(lambda: len(portal.requests) == args.stations, 300, 0.5)
    print(f"{len(portal.requests)} requests after {time.monotonic() - t0:.1f} s")
    t1 = time.monotonic()
    portal.approve_all()
    ok = wait_for(lambda: all(a.all_connected() for a in agents), 300, 0.5)
    print(
        f"all connected: {ok} {time.monotonic() - t1:.1f} s after approval; "
        f"threads {threading.active_count()}"
    )
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    time.sleep(10)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(f"idle CPU {100 * cpu / (time.monotonic() - w0):.1f}% of one core")
    print(f"stations seen on the broker: {len(sub.topics_seen())}")
    for a in agents:
        a.stop(timeout=0)
    for a in agents:
        a.join(10)
    sub.close()
    broker.stop()
    portal.close()


if __name__ == "__main__":
    main()
