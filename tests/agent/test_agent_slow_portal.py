"""A slow portal does not silence a device: while a renewal call waits for the portal, the
device thread keeps pumping MQTT, so heartbeats go out at their interval (TLS Mosquitto)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

from tests.agent.conftest import connected_agent
from tests.agent.helpers import Subscriber, wait_for


def _entry(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())["devices"]["aws"]


def _ts(beat: dict) -> float:
    return dt.datetime.fromisoformat(beat["ts"].replace("Z", "+00:00")).timestamp()


def test_heartbeats_keep_their_interval_while_the_renewal_endpoint_stalls(
    tmp_path, portal, broker, make_agent
) -> None:
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    state_dir = tmp_path / "state"
    agent, token = connected_agent(make_agent, portal, broker, state_dir, "st-slow")
    old_serial = _entry(state_dir)["cert_serial"]
    threads_idle = threading.active_count()

    portal.stall_renewals = 6.0  # below the agent's 10 s HTTP timeout: the answer comes
    device = portal.stations[token].devices[0]
    device["renew_after"] = dt.datetime.now(dt.UTC).isoformat()  # due now (older portal)
    assert wait_for(lambda: portal.stalls, 20)
    (start, end) = portal.stalls[0]
    beats = sorted(_ts(b) for b in sub.payloads() if start + 0.5 <= _ts(b) <= end)
    assert len(beats) >= 4, beats  # heartbeat_interval is 1 s
    gaps = [b - a for a, b in zip([start, *beats], [*beats, end], strict=True)]
    assert max(gaps) < 2.5, gaps
    # The stalled renewal still completes, and the helper thread is gone afterwards.
    assert wait_for(lambda: _entry(state_dir)["cert_serial"] != old_serial, 15)
    assert wait_for(lambda: agent.workers["aws"].status == "connected", 10)
    assert wait_for(lambda: not agent.errands.busy(), 5)
    assert threading.active_count() <= threads_idle
    sub.close()
