"""The embedded broker on its own, with paho clients (3.1.1 and 5)."""

from __future__ import annotations

import socket
import struct
import threading

import paho.mqtt.client as mqtt
import pytest

from localaws.broker import BrokerThread
from localaws.mqtt_codec import CONNECT, build, enc_str, valid_filter

from .helpers import PlainSubscriber, unique


@pytest.fixture(scope="module")
def broker():
    with BrokerThread() as b:
        yield b


def _client(port: int, protocol=mqtt.MQTTv311, keepalive: int = 60) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("c"), protocol=protocol)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port, keepalive=keepalive)
    c.loop_start()
    assert connected.wait(10)
    return c


def test_leading_wildcards_skip_dollar_topics(broker):
    """MQTT 4.7.2 (and AWS IoT): ``#`` and ``+`` at the start never match a ``$`` topic."""
    base = unique("d")
    everything = PlainSubscriber("127.0.0.1", broker.port, "#")
    aws = PlainSubscriber("127.0.0.1", broker.port, f"$aws/{base}/#")
    parent = PlainSubscriber("127.0.0.1", broker.port, f"{base}/#")
    pub = _client(broker.port)
    try:
        pub.publish(f"$aws/{base}/x", b"1", qos=1).wait_for_publish(10)
        pub.publish(base, b"2", qos=1).wait_for_publish(10)
        assert aws.wait(1) == [(f"$aws/{base}/x", b"1")]
        assert parent.wait(1) == [(base, b"2")]  # "a/#" also matches "a"
        with everything.cond:  # the "$aws" message was routed before this one
            assert everything.cond.wait_for(lambda: (base, b"2") in everything.messages, 30)
            assert not [t for t, _ in everything.messages if t.startswith("$")]
    finally:
        pub.disconnect()
        pub.loop_stop()
        for sub in (everything, aws, parent):
            sub.close()


def test_filter_validation():
    assert valid_filter("a/+/#")
    assert not valid_filter("a/#/b")
    assert not valid_filter("a/b+")


def test_wildcard_pubsub_qos1(broker):
    base = unique("t")
    sub = PlainSubscriber("127.0.0.1", broker.port, f"{base}/+/temp")
    pub = _client(broker.port)
    try:
        pub.publish(f"{base}/room1/temp", b"20", qos=1).wait_for_publish(10)
        pub.publish(f"{base}/room1/humidity", b"50", qos=1).wait_for_publish(10)
        pub.publish(f"{base}/room2/temp", b"21", qos=0)
        msgs = sub.wait(2)
        assert sorted(msgs) == [(f"{base}/room1/temp", b"20"), (f"{base}/room2/temp", b"21")]
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.close()


def test_retained_and_unsubscribe(broker):
    base = unique("r")
    pub = _client(broker.port)
    try:
        pub.publish(f"{base}/state", b"on", qos=1, retain=True).wait_for_publish(10)
        sub = PlainSubscriber("127.0.0.1", broker.port, f"{base}/#")
        assert sub.wait(1) == [(f"{base}/state", b"on")]
        done = threading.Event()
        sub.client.on_unsubscribe = lambda *a: done.set()
        sub.client.unsubscribe(f"{base}/#")
        assert done.wait(10)
        pub.publish(f"{base}/state", b"off", qos=1).wait_for_publish(10)
        assert sub.wait(2, timeout=0.5) == [(f"{base}/state", b"on")]
        sub.close()
    finally:
        pub.disconnect()
        pub.loop_stop()


def test_mqtt5_client(broker):
    base = unique("v5")
    got = threading.Event()
    seen = []
    c = _client(broker.port, protocol=mqtt.MQTTv5)
    try:

        def on_message(client, userdata, msg):
            seen.append((msg.topic, msg.payload))
            got.set()

        c.on_message = on_message
        subscribed = threading.Event()
        c.on_subscribe = lambda *a: subscribed.set()
        c.subscribe(f"{base}/#", qos=1)
        assert subscribed.wait(10)
        c.publish(f"{base}/x", b"five", qos=1).wait_for_publish(10)
        assert got.wait(10)
        assert seen == [(f"{base}/x", b"five")]
    finally:
        c.disconnect()
        c.loop_stop()


def test_will_message_on_abnormal_disconnect(broker):
    base = unique("w")
    sub = PlainSubscriber("127.0.0.1", broker.port, f"{base}/status")
    body = (
        enc_str("MQTT")
        + bytes([4, 0x02 | 0x04 | 0x08])
        + struct.pack("!H", 30)
        + enc_str(unique("will"))
        + enc_str(f"{base}/status")
        + enc_str(b"offline")
    )
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
        raw.sendall(build(CONNECT, 0, body))
        assert raw.recv(4)[:1] == b"\x20"  # CONNACK; then close without DISCONNECT
    try:
        assert sub.wait(1) == [(f"{base}/status", b"offline")]
    finally:
        sub.close()


def _raw_connect(port: int, keepalive: int) -> socket.socket:
    body = (
        enc_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + enc_str(unique("raw"))
    )
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.sendall(build(CONNECT, 0, body))
    assert raw.recv(4) == b"\x20\x02\x00\x00"
    return raw


def test_pingreq_answered(broker):
    with _raw_connect(broker.port, 60) as raw:
        raw.sendall(b"\xc0\x00")
        assert raw.recv(2) == b"\xd0\x00"


def test_silent_client_closed_after_keepalive(broker):
    with _raw_connect(broker.port, 1) as raw:
        assert raw.recv(1) == b""  # closed after 1.5 x keep-alive without packets
