"""End-to-end: agents onboard against the fake portal and talk to a real Mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devices.agent.state import StateStore
from tests.agent.conftest import device_entry
from tests.agent.helpers import Subscriber, wait_for


def test_three_agents_onboard_connect_and_heartbeat(tmp_path, portal, broker, make_agent):
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    agents = []
    for i in range(3):
        token = portal.add_station(f"st-{i:03d}", [device_entry(broker)], poll_interval=1)
        agents.append(make_agent(tmp_path / f"st{i}", portal=portal, token=token, broker=broker))
    assert wait_for(lambda: len(portal.requests) == 3, 10)
    # Nothing connects before approval.
    time.sleep(0.5)
    assert not sub.payloads()
    assert portal.approve_all() == 3
    for agent in agents:
        assert agent.wait_connected(15), agent.device_report()
    assert wait_for(lambda: len(sub.topics_seen()) == 3, 10)
    assert sub.topics_seen() == {f"things/st-{i:03d}-aws/heartbeat" for i in range(3)}
    beat = sub.payloads("things/st-001-aws/")[0]
    assert beat["thing"] == "st-001-aws"
    assert beat["device"] == "aws"
    # The portal hears about it: a state report with connected=true and the thing name.
    for st in portal.stations.values():
        assert wait_for(
            lambda st=st: any(
                d.get("connected") and d["status"] == "connected"
                for r in st.reports for d in r["devices"]
            ),
            10,
        )
        last = st.reports[-1]["devices"][0]
        assert last["thing_name"] == f"{st.name}-aws"
        assert last["certificate_serial"]
    sub.close()
