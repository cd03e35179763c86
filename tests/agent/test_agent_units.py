"""Unit tests of the agent's building blocks (no network)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from fleet_agent.config import ConfigError, DeviceConfig, parse_connect_host, render_topic
from fleet_agent.diskqueue import DiskQueue
from fleet_agent.fsutil import atomic_write
from fleet_agent.keys import (
    KeyFileError,
    build_csr,
    cert_info,
    generate_private_key,
    load_private_key,
    public_key_der,
    save_private_key,
)
from fleet_agent.mqtt_link import Backoff
from fleet_agent.ratelimit import PublishLimiter, SlidingWindow, TokenBucket
from fleet_agent.state import CorruptStateError, StateStore


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048"])
def test_key_is_0600_encrypted_and_roundtrips(tmp_path, key_type):
    key = generate_private_key(key_type)
    path = tmp_path / "k" / "key.pem"
    save_private_key(path, key, "pw")
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    with pytest.raises(KeyFileError, match="cannot be decrypted"):
        load_private_key(path, None)
    with pytest.raises(KeyFileError, match="cannot be decrypted"):
        load_private_key(path, "other")
    assert public_key_der(load_private_key(path, "pw")) == public_key_der(key)
    assert "BEGIN CERTIFICATE REQUEST" in build_csr(key, "dev")
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_key_needs_password_and_known_type(tmp_path):
    with pytest.raises(KeyFileError, match="password is required"):
        save_private_key(tmp_path / "k.pem", generate_private_key(), "")
    with pytest.raises(ValueError, match="unsupported key type"):
        generate_private_key("dsa-1024")
    with pytest.raises(KeyFileError, match="is missing"):
        load_private_key(tmp_path / "none.pem", "pw")


def test_cert_info_default_renewal_is_two_thirds(ca):
    key = generate_private_key()
    info = cert_info(ca.sign(key.public_key(), "st-1-aws", lifetime=299))
    assert info.common_name == "st-1-aws"
    assert info.public_key_der == public_key_der(key)
    assert info.default_renew_at() - info.not_before == (info.not_after - info.not_before) * 2 / 3


def test_atomic_write_replaces_and_sets_mode(tmp_path):
    p = tmp_path / "f"
    atomic_write(p, b"one", 0o600)
    atomic_write(p, b"two", 0o644)
    assert p.read_bytes() == b"two"
    assert p.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["f"]


def test_state_store_persists_and_detects_corruption(tmp_path):
    store = StateStore(tmp_path)
    store.load()
    store.update_device("aws", key_path="/k", request_id=7)
    again = StateStore(tmp_path)
    again.load()
    assert again.device("aws") == {"completed": False, "key_path": "/k", "request_id": 7}
    again.update_device("aws", request_id=None)
    assert "request_id" not in again.device("aws")
    for bad, why in [
        ("[]", "top level is not an object"),
        ('{"version": 9, "devices": {}}', "unknown version 9"),
        ('{"version": 1, "devices": []}', "'devices' is not an object"),
        ('{"version": 1, "devices": {"a": {"completed": true}}}', "completed but has no"),
    ]:
        (tmp_path / "state.json").write_text(bad)
        with pytest.raises(CorruptStateError, match="is corrupt") as exc:
            StateStore(tmp_path).load()
        assert why in str(exc.value)


def test_disk_queue_bounds_drop_oldest_and_count(tmp_path):
    q = DiskQueue(tmp_path / "q.sqlite3", max_messages=5, max_bytes=10_000)
    for i in range(8):
        q.put("aws", "p", json.dumps(i).encode())
    assert q.depth("aws") == 5
    assert q.dropped("aws") == 3
    assert [int(i.payload) for i in q.peek("aws", 0, 10)] == [3, 4, 5, 6, 7]
    q.put("other", "p", b"x")  # bounds are per device
    assert q.depth("aws") == 5
    assert q.dropped("other") == 0
    q.close()
    q = DiskQueue(tmp_path / "q.sqlite3", max_messages=100, max_bytes=250)
    assert q.depth("aws") == 5  # survives reopening
    assert q.dropped("aws") == 3
    for _ in range(3):
        q.put("aws", "p", b"y" * 100)
    assert q.depth("aws") == 2  # 250 bytes hold two 100-byte items
    assert q.dropped("aws") == 3 + 6
    first = q.peek("aws", 0, 1)[0]
    q.ack(first.id)
    assert q.depth("aws") == 1
    assert q.peek("aws", first.id, 10)[0].id > first.id
    assert q.mark_seen("aws", "id:1") is True
    assert q.mark_seen("aws", "id:1") is False
    assert q.was_seen("aws", "id:1")
    assert not q.was_seen("other", "id:1")
    q.close()


def test_disk_queue_batches_and_depth_stay_exact(tmp_path):
    """put_many/ack_many: one transaction each; the in-memory depth matches the rows."""
    q = DiskQueue(tmp_path / "q.sqlite3", max_messages=1000, max_bytes=10**6)
    ids = q.put_many("aws", [("p", json.dumps(i).encode()) for i in range(300)])
    assert len(ids) == 300
    assert ids == sorted(ids)
    assert q.depth("aws") == 300
    q.ack_many(ids[:250] + [10**9])  # an unknown id is ignored
    assert q.depth("aws") == 50
    assert [int(i.payload) for i in q.peek("aws", 0, 2)] == [250, 251]
    with pytest.raises(TypeError):
        q.put_many("aws", [("p", b"ok"), ("p", object())])  # type: ignore[list-item]
    assert q.depth("aws") == 50  # all or nothing
    q.put_many("aws", [("p", b"x" * 10)] * 960)  # 1010 > 1000: the 10 oldest dropped
    assert q.depth("aws") == 1000
    assert q.dropped("aws") == 10
    q.close()
    q = DiskQueue(tmp_path / "q.sqlite3", max_messages=1000, max_bytes=10**6)
    assert q.depth("aws") == 1000  # totals rebuilt from the rows on open
    assert len(q.peek("aws", 0, 5000)) == 1000
    q.close()


def test_disk_queue_put_cost_does_not_grow_with_depth(tmp_path):
    """A long outage must not make each new reading slower to store (no per-put scan)."""
    import time as _time

    q = DiskQueue(tmp_path / "q.sqlite3")

    def rate(n: int) -> float:
        t0 = _time.perf_counter()
        for _ in range(n):
            q.put("aws", "p", b"v" * 100)
        return n / (_time.perf_counter() - t0)

    first = rate(500)
    q.put_many("aws", [("p", b"v" * 100)] * 30_000)
    later = rate(500)
    assert later > first / 3, (first, later)
    q.close()


def test_token_bucket_limits_rate_and_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=100, capacity=10, clock=clock)
    taken = 0
    while bucket.available():
        bucket.take()
        taken += 1
    assert taken == 10
    assert bucket.wait_time() == pytest.approx(0.01)
    clock.t += 1.0
    count = 0
    while bucket.available():
        bucket.take()
        count += 1
    assert count == 10  # capacity caps the refill


def _worst_window(events: list[tuple[float, int]], span: float = 1.0) -> tuple[int, int]:
    """Most publishes and most bytes in any window of ``span`` seconds."""
    worst_n = worst_b = 0
    start = 0
    total = 0
    for end, (t, size) in enumerate(events):
        total += size
        while events[start][0] <= t - span:
            total -= events[start][1]
            start += 1
        worst_n = max(worst_n, end - start + 1)
        worst_b = max(worst_b, total)
    return worst_n, worst_b


def test_publish_limiter_never_exceeds_aws_limits_in_any_second():
    """Exactly the AWS quota: no sliding one-second window over 100 publishes or 512 KiB."""
    clock = FakeClock()
    lim = PublishLimiter(clock=clock)
    events = []
    for _ in range(5000):  # 5 s in 1 ms steps, always wanting to send
        clock.t += 0.001
        while lim.try_acquire(100):
            events.append((clock.t, 100))
    worst_n, _ = _worst_window(events)
    assert worst_n <= 100
    assert len(events) >= 5 * 100 * 0.9  # and still close to the allowed rate
    assert lim.wait_time(100) > 0

    lim = PublishLimiter(clock=clock)
    clock.t += 10
    big = []
    for _ in range(5000):
        clock.t += 0.001
        while lim.try_acquire(64 * 1024):
            big.append((clock.t, 64 * 1024))
    _, worst_b = _worst_window(big)
    assert worst_b <= 512 * 1024
    assert len(big) * 64 >= 5 * 512 * 0.8

    off = PublishLimiter(enabled=False)
    assert all(off.try_acquire(10**6) for _ in range(10_000))


def test_sliding_window_wait_time_and_oversized_item():
    clock = FakeClock()
    win = SlidingWindow(max_count=2, max_bytes=1000, span=1.0, clock=clock)
    assert win.allows(5000)  # a lone oversized item is not blocked forever
    win.record(10)
    clock.t += 0.25
    win.record(10)
    assert not win.allows(10)
    assert win.wait_time(10) == pytest.approx(0.75)
    clock.t += 0.75
    assert win.allows(10)
    assert win.wait_time(10) == 0.0
    # A slot is counted from when its write returned (restamped), not when it was allowed.
    win.record(10)
    clock.t += 0.5
    win.restamp_last()
    win.record(10)
    clock.t += 0.6  # 1.1 s after the first was allowed, 0.6 s after it was written
    assert not win.allows(10)


def test_backoff_grows_with_jitter_and_never_below_one_second():
    b = Backoff(minimum=1.0, maximum=30.0)
    delays = [b.next_delay() for _ in range(10)]
    assert all(1.0 <= d <= 30.0 for d in delays)
    assert delays[5] >= 15  # 32 capped at 30, jitter keeps at least half
    b.reset()
    assert b.next_delay() == 1.0


def test_device_config_validation_and_topics():
    dc = DeviceConfig.from_dict(
        {
            "name": "aws",
            "endpoint": "x-ats.iot.eu-west-1.amazonaws.com",
            "renew_after": "2030-01-01T00:00:00Z",
            "downlink_topic": None,
        }
    )
    assert dc.port == 8883
    assert dc.key_type == "ec-p256"
    assert dc.downlink_topic is None
    assert dc.renew_after == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ConfigError, match="no MQTT endpoint"):
        DeviceConfig.from_dict({"name": "aws"})
    with pytest.raises(ConfigError, match="unsupported key type"):
        DeviceConfig.from_dict({"name": "aws", "endpoint": "e", "key_type": "dsa"})
    with pytest.raises(ConfigError, match="not a valid name"):
        DeviceConfig.from_dict({"name": "../x", "endpoint": "e"})
    with pytest.raises(ConfigError, match="ISO 8601"):
        DeviceConfig.from_dict({"name": "a", "endpoint": "e", "renew_after": "soon"})
    assert (
        render_topic(
            "t/{station}/{DevEUI}/{thing}/{point}", thing="T", station="S", device="D", point="P"
        )
        == "t/S/D/T/P"
    )
    assert parse_connect_host("127.0.0.1:18883", 8883) == ("127.0.0.1", 18883)
    assert parse_connect_host("broker.local", 8883) == ("broker.local", 8883)
    assert parse_connect_host("[::1]:1", 8883) == ("::1", 1)
    assert parse_connect_host(None, 8883) is None


def test_desired_cache_without_secrets_keeps_no_key_password(tmp_path) -> None:
    from fleet_agent.state import desired_cache_load, desired_cache_store

    cfg = {"station": "st", "devices": [{"name": "aws", "key_password": "secret-pw"}]}
    desired_cache_store(tmp_path, cfg, '"e1"', with_secrets=False)
    assert "secret-pw" not in (tmp_path / "desired.json").read_text()
    loaded, etag = desired_cache_load(tmp_path)
    assert loaded == {"station": "st", "devices": [{"name": "aws"}]}
    assert etag is None
    desired_cache_store(tmp_path, cfg, '"e1"')
    assert desired_cache_load(tmp_path) == (cfg, '"e1"')


def test_backoff_at_maximum_stays_there_until_reset():
    b = Backoff(minimum=1.0, maximum=30.0)
    assert 27.0 <= b.at_maximum() <= 30.0
    assert all(15.0 <= b.next_delay() <= 30.0 for _ in range(20))  # no quick retries after
    b.reset()
    assert b.next_delay() <= 1.0 + 1e-9


def test_refused_certificate_alerts_are_told_from_network_trouble():
    from fleet_agent.device import CONNACK_NOT_AUTHORIZED, refused_certificate

    assert refused_certificate("SSLV3_ALERT_BAD_CERTIFICATE")
    assert refused_certificate("sslv3 alert certificate revoked".replace(" ", "_"))
    assert refused_certificate("TLSV1_ALERT_ACCESS_DENIED")
    assert not refused_certificate("CERTIFICATE_VERIFY_FAILED")  # the broker's, not ours
    assert not refused_certificate("Connection refused")
    assert {5, 135} <= CONNACK_NOT_AUTHORIZED


def test_state_reports_are_numbered_within_a_run(make_agent, tmp_path: Path) -> None:  # noqa: ANN001
    """The portal orders an agent's reports by (run, sequence): a report the agent gave up
    waiting for cannot overwrite a newer one. A new agent run starts a new run id."""
    agent = make_agent(tmp_path / "state", start=False)
    first, second = agent.state_report(), agent.state_report()
    assert first["run"] == second["run"]
    assert len(first["run"]) == 16
    assert int(first["run"], 16) >= 0
    assert (first["sequence"], second["sequence"]) == (1, 2)
    assert first["devices"] == []
    assert first["agent_version"]
    again = make_agent(tmp_path / "state2", start=False).state_report()
    assert again["run"] != first["run"]
    assert again["sequence"] == 1
