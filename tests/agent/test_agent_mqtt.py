"""End-to-end: agents onboard against the fake portal and talk to a real Mosquitto."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from fleet_agent.state import StateStore
from tests.agent.conftest import device_entry
from tests.agent.helpers import Subscriber, wait_for


def test_three_agents_onboard_connect_and_heartbeat(tmp_path, portal, broker, make_agent):
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    agents = []
    for i, key_type in enumerate(["ec-p256", "ec-p384", "rsa-2048"]):
        token = portal.add_station(
            f"st-{i:03d}", [device_entry(broker, key_type=key_type)], poll_interval=1
        )
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
                for r in st.reports
                for d in r["devices"]
            ),
            10,
        )
        last = st.reports[-1]["devices"][0]
        assert last["thing_name"] == f"{st.name}-aws"
        assert last["certificate_serial"]
    sub.close()


def _connected_agent(tmp_path, portal, broker, make_agent, name="st-000", **kw):
    token = portal.add_station(name, [device_entry(broker)], poll_interval=1)
    agent = make_agent(tmp_path / name, portal=portal, token=token, broker=broker, **kw)
    assert wait_for(lambda: len(portal.requests) >= 1, 10)
    portal.approve_all()
    assert agent.wait_connected(15), agent.device_report()
    return agent, token


def test_renewal_by_lifetime_reconnects_with_new_cert_and_deletes_old_key(
    tmp_path, portal, broker, make_agent
):
    portal.lifetime = 6  # renew at 2/3 of the lifetime: 4 s after issuance
    portal.renewal_lifetime = 3600
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    agent, _ = _connected_agent(tmp_path, portal, broker, make_agent)
    state = StateStore(tmp_path / "st-000")
    state.load()
    first = state.device("aws")
    assert first["generation"] == 1
    old_key = Path(first["key_path"])
    assert old_key.exists()

    def renewed():
        state.load()
        entry = state.device("aws")
        return entry.get("generation") == 2 and "retired" not in entry

    assert wait_for(renewed, 15)
    entry = state.device("aws")
    assert entry["cert_serial"] != first["cert_serial"]
    assert not old_key.exists()
    assert not Path(first["cert_path"]).exists()
    assert Path(entry["key_path"]).exists()
    renewal = [r for r in portal.requests.values() if r.renewal]
    assert len(renewal) == 1
    assert renewal[0].status == "issued"
    # Wait until the first certificate has expired, then force a fresh TLS handshake:
    # only the renewed certificate can get the device back online.
    old_not_after = dt.datetime.fromisoformat(first["cert_not_after"].replace("Z", "+00:00"))
    time.sleep(max(0.0, (old_not_after - dt.datetime.now(dt.UTC)).total_seconds() + 0.5))
    broker.stop()
    worker = agent.workers["aws"]
    assert wait_for(lambda: not worker.connected, 10)
    broker.start()
    assert wait_for(lambda: worker.connected, 10)
    n = len(sub.payloads())
    assert wait_for(lambda: len(sub.payloads()) > n + 1, 5)
    sub.close()


def test_renew_after_from_config_triggers_one_renewal(tmp_path, portal, broker, make_agent):
    agent, token = _connected_agent(tmp_path, portal, broker, make_agent)
    state = StateStore(tmp_path / "st-000")
    state.load()
    not_before = state.device("aws")["cert_not_before"]
    time.sleep(2.1)
    # The portal's renewal point for the current certificate is already past.
    ra = dt.datetime.fromisoformat(not_before.replace("Z", "+00:00")) + dt.timedelta(seconds=1)
    portal.stations[token].devices[0]["renew_after"] = ra.isoformat()
    assert wait_for(
        lambda: any(r.renewal and r.status == "issued" for r in portal.requests.values()), 10
    )
    assert wait_for(
        lambda: agent.workers["aws"].connected and agent.workers["aws"].status == "connected", 10
    )
    time.sleep(3)  # the stale renew_after (older than the new cert) must not renew again
    assert len([r for r in portal.requests.values() if r.renewal]) == 1


def test_store_and_forward_survives_broker_outage(tmp_path, portal, broker, make_agent):
    agent, _ = _connected_agent(tmp_path, portal, broker, make_agent)
    sub = Subscriber(broker.plain_port, ["things/+/uplink/#"], client_id="sf-sub")
    for i in range(20):
        agent.publish_point("aws", "temp", i)
    assert wait_for(lambda: len(sub.payloads()) == 20, 10)
    broker.stop()
    assert wait_for(lambda: not agent.workers["aws"].connected, 10)
    for i in range(20, 220):
        agent.publish_point("aws", "temp", i)
    assert agent.queue.depth("aws") == 200
    time.sleep(1.5)
    broker.start()
    assert wait_for(lambda: len({p["value"] for p in sub.payloads()}) == 220, 20), len(
        sub.payloads()
    )
    assert {p["value"] for p in sub.payloads()} == set(range(220))
    assert wait_for(lambda: agent.queue.depth("aws") == 0, 5)
    assert agent.queue.dropped("aws") == 0
    assert all(m.topic == "things/st-000-aws/uplink/temp" for m in sub.messages)
    sub.close()


def test_outage_mid_run_loses_nothing_and_drain_keeps_the_aws_quota(
    tmp_path, portal, broker, make_agent, monkeypatch
):
    """The outage case with counts: points offered before, during and after a broker
    outage all arrive (distinct ids), and no one-second window of the agent's PUBLISHes
    (uplinks and heartbeats) exceeds 100 messages or 512 KiB, also while draining."""
    from fleet_agent import mqtt_link

    published: list[tuple[float, int]] = []
    orig = mqtt_link.RoutedClient.publish

    def logged(client, topic, payload=None, *a, **kw):
        info = orig(client, topic, payload, *a, **kw)
        published.append((time.monotonic(), len(payload or b"")))
        return info

    monkeypatch.setattr(mqtt_link.RoutedClient, "publish", logged)
    agent, _ = _connected_agent(tmp_path, portal, broker, make_agent)
    sub = Subscriber(broker.plain_port, ["things/+/uplink/#"], client_id="outage-count-sub")
    offered = 0

    def offer(seconds: float, per_second: int = 60) -> None:
        nonlocal offered
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(per_second // 10):
                agent.publish_point("aws", "flow", offered, pad="x" * 200)
                offered += 1
            time.sleep(0.1)

    offer(1.0)
    broker.stop()
    down_at = time.monotonic()
    offer(3.0)
    assert not agent.workers["aws"].connected
    backlog = agent.queue.depth("aws")
    assert backlog >= 150  # what the outage left on disk
    broker.start()
    up_at = time.monotonic()
    offer(1.0)
    assert wait_for(lambda: len({p["value"] for p in sub.payloads()}) == offered, 30), (
        offered,
        len({p["value"] for p in sub.payloads()}),
    )
    received = sub.payloads()
    assert {p["value"] for p in received} == set(range(offered))  # lost = 0
    assert agent.queue.dropped("aws") == 0
    assert wait_for(lambda: agent.queue.depth("aws") == 0, 5)
    assert up_at - down_at >= 3.0
    events = sorted(published)
    start = total = worst_n = worst_b = 0
    for end, (t, size) in enumerate(events):
        total += size
        while events[start][0] <= t - 1.0:
            total -= events[start][1]
            start += 1
        worst_n = max(worst_n, end - start + 1)
        worst_b = max(worst_b, total)
    assert worst_n <= 100, worst_n
    assert worst_b <= 512 * 1024
    drain = [t for t, _ in events if t >= up_at]
    # The backlog (plus the live points) cannot leave faster than 100/s.
    assert drain[-1] - drain[0] >= (backlog / 100) * 0.9
    sub.close()


def test_queued_points_survive_agent_restart(tmp_path, portal, broker, make_agent):
    agent, token = _connected_agent(tmp_path, portal, broker, make_agent)
    sub = Subscriber(broker.plain_port, ["things/+/uplink/#"], client_id="restart-sub")
    broker.stop()
    assert wait_for(lambda: not agent.workers["aws"].connected, 10)
    for i in range(50):
        agent.publish_point("aws", "counter", i)
    agent.stop()
    from fleet_agent.diskqueue import DiskQueue

    q = DiskQueue(tmp_path / "st-000" / "queue.sqlite3")
    assert q.depth("aws") == 50
    q.close()
    broker.start()
    n_requests = len(portal.requests)
    again = make_agent(tmp_path / "st-000", portal=portal, token=token, broker=broker)
    assert again.wait_connected(15)
    assert wait_for(lambda: {p["value"] for p in sub.payloads()} == set(range(50)), 10)
    assert len(portal.requests) == n_requests  # no second onboarding
    sub.close()


def test_rate_limit_keeps_publishes_under_100_per_second(tmp_path, portal, broker, make_agent):
    agent, _ = _connected_agent(tmp_path, portal, broker, make_agent)
    sub = Subscriber(broker.plain_port, ["things/+/uplink/#"])
    arrivals: list[float] = []
    orig = sub._on_message

    def stamp(client, userdata, msg):
        arrivals.append(time.monotonic())
        orig(client, userdata, msg)

    sub.client.on_message = stamp
    for i in range(300):
        agent.publish_point("aws", "p", i)
    assert wait_for(lambda: len(arrivals) == 300, 15)
    duration = arrivals[-1] - arrivals[0]
    assert duration >= 2.5
    worst = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert worst <= 115, worst
    sub.close()


def test_rate_limit_can_be_switched_off(tmp_path, portal, broker, make_agent):
    agent, _ = _connected_agent(tmp_path, portal, broker, make_agent, rate_limit=False)
    sub = Subscriber(broker.plain_port, ["things/+/uplink/#"])
    t0 = time.monotonic()
    for i in range(400):
        agent.publish_point("aws", "p", i)
    assert wait_for(lambda: len(sub.payloads()) == 400, 15)
    assert time.monotonic() - t0 < 3.0
    sub.close()


def test_payload_over_128kb_is_rejected(tmp_path, portal, broker, make_agent):
    from fleet_agent.agent import PayloadTooLargeError, UnknownDeviceError

    agent, _ = _connected_agent(tmp_path, portal, broker, make_agent)
    with pytest.raises(PayloadTooLargeError, match="at most 131072 bytes"):
        agent.publish_point("aws", "blob", "x" * (128 * 1024))
    with pytest.raises(UnknownDeviceError):
        agent.publish_point("nope", "p", 1)
    assert agent.queue.depth("aws") == 0


def test_outbox_spool_directory_is_ingested(tmp_path, portal, broker, make_agent):
    agent, _ = _connected_agent(tmp_path, portal, broker, make_agent)
    sub = Subscriber(broker.plain_port, ["things/+/uplink/#"])
    outbox = tmp_path / "st-000" / "outbox"
    (outbox / "a.json.tmp").write_text(json.dumps([{"device": "aws", "point": "hum", "value": 40}]))
    (outbox / "a.json.tmp").rename(outbox / "a.json")
    (outbox / "b.json").write_text("{not json")
    mixed = [{"device": "aws", "point": "ok", "value": 1}, {"device": "nope", "point": "x"}]
    (outbox / "c.json").write_text(json.dumps(mixed))
    assert wait_for(lambda: len(sub.payloads()) == 1, 10)
    assert wait_for(lambda: (outbox / "rejected" / "c.json").exists(), 5)
    time.sleep(0.5)
    assert len(sub.payloads()) == 1  # nothing from the half-bad file was queued
    msg = sub.messages[0]
    assert msg.topic == "things/st-000-aws/uplink/hum"
    assert json.loads(msg.payload)["value"] == 40
    assert not (outbox / "a.json").exists()
    assert (outbox / "rejected" / "b.json").exists()
    sub.close()


def test_downlink_handled_once_even_when_redelivered(tmp_path, portal, broker, make_agent):
    import paho.mqtt.client as mqtt

    seen: list[tuple[str, dict]] = []
    agent, token = _connected_agent(
        tmp_path, portal, broker, make_agent, on_command=lambda d, r: seen.append((d, r))
    )
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", broker.plain_port)
    pub.loop_start()
    time.sleep(0.5)  # subscription of the agent settles
    topic = "things/st-000-aws/downlink"
    for _ in range(3):
        pub.publish(
            topic, json.dumps({"id": "cmd-1", "action": "reboot"}), qos=1
        ).wait_for_publish()
    pub.publish(topic, json.dumps({"action": "blink"}), qos=1).wait_for_publish()
    assert wait_for(lambda: len(seen) == 2, 5)
    time.sleep(0.5)
    assert [r["payload"].get("action") for _, r in seen] == ["reboot", "blink"]
    inbox = tmp_path / "st-000" / "inbox" / "aws"
    assert len(list(inbox.glob("*.json"))) == 2
    # After a restart the same command id is still recognised.
    agent.stop()
    seen2: list = []
    again = make_agent(
        tmp_path / "st-000",
        portal=portal,
        token=token,
        broker=broker,
        on_command=lambda d, r: seen2.append(r),
    )
    assert again.wait_connected(10)
    time.sleep(0.5)
    pub.publish(topic, json.dumps({"id": "cmd-1", "action": "reboot"}), qos=1).wait_for_publish()
    pub.publish(topic, json.dumps({"id": "cmd-2", "action": "stop"}), qos=1).wait_for_publish()
    assert wait_for(lambda: len(seen2) == 1, 5)
    time.sleep(0.5)
    assert [r["command_id"] for r in seen2] == ["cmd-2"]
    pub.loop_stop()
    pub.disconnect()


def test_first_connection_dropped_like_jitp_then_reconnects_within_limits(
    tmp_path, portal, broker, make_agent
):
    from tests.agent.helpers import DroppingProxy

    proxy = DroppingProxy(broker.tls_port, drop_first=2)
    token = portal.add_station("st-jitp", [device_entry(broker)], poll_interval=1)
    agent = make_agent(
        tmp_path / "st",
        portal=portal,
        token=token,
        broker=broker,
        connect_host=f"127.0.0.1:{proxy.port}",
    )
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.approve_all()
    assert agent.wait_connected(20), agent.device_report()
    assert len(proxy.accepted) >= 3
    gaps = [b - a for a, b in zip(proxy.accepted, proxy.accepted[1:], strict=False)]
    assert all(g >= 0.95 for g in gaps[:2]), gaps  # never more than one attempt per second
    proxy.close()


def test_device_removed_from_config_is_stopped(tmp_path, portal, broker, make_agent):
    agent, token = _connected_agent(tmp_path, portal, broker, make_agent)
    worker = agent.workers["aws"]
    before = portal.config_304
    assert wait_for(lambda: portal.config_304 > before, 10)  # unchanged config: 304 via ETag
    reports = len(portal.stations[token].reports)
    # a heartbeat report each poll
    assert wait_for(lambda: len(portal.stations[token].reports) >= reports + 1, 10)
    portal.stations[token].devices = []
    assert wait_for(lambda: not worker.is_alive(), 10)
    assert "aws" not in agent.workers
    assert Path(StateStore(tmp_path / "st-000").path).exists()


def test_restart_while_portal_down_runs_devices_from_cached_config(
    tmp_path, portal, broker, make_agent
):
    agent, token = _connected_agent(tmp_path, portal, broker, make_agent)
    agent.stop()
    portal.close()
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    again = make_agent(tmp_path / "st-000", portal=portal, token=token, broker=broker)
    assert again.wait_connected(15), again.device_report()
    assert wait_for(lambda: "things/st-000-aws/heartbeat" in sub.topics_seen(), 5)
    assert (tmp_path / "st-000" / "desired.json").stat().st_mode & 0o777 == 0o600
    sub.close()
