"""Renewal with proof of possession, and the recovery path: a rejected renewal, an expired
certificate or a rejected first request leads to a fresh key and a normal onboarding
request that staff approve, after which the device reconnects (TLS Mosquitto)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.agent.conftest import device_entry
from tests.agent.helpers import wait_for


def _status(state_dir: Path) -> dict:
    try:
        doc = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc["devices"][0] if doc.get("devices") else {}


def _entry(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())["devices"]["aws"]


def test_renewal_is_signed_by_the_current_key(tmp_path, portal, broker, make_agent) -> None:
    portal.lifetime = 6  # renew two thirds in: 4 s after issuance
    portal.renewal_lifetime = 3600
    token = portal.add_station("st-proof", [device_entry(broker)], poll_interval=1)
    state_dir = tmp_path / "state"
    make_agent(state_dir, portal=portal, token=token, broker=broker)
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.approve_all()
    first = portal.requests[1]
    assert first.proof is None  # a first request has no key to prove yet
    assert wait_for(lambda: any(r.renewal for r in portal.requests.values()), 15)
    (renewal,) = [r for r in portal.requests.values() if r.renewal]
    assert renewal.proof is not None
    old_cert = x509.load_pem_x509_certificate(first.certificate.encode())
    der = x509.load_pem_x509_csr(renewal.csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    message = (
        f"fleet-renewal-v1\nst-proof\naws\n{hashlib.sha256(der).hexdigest()}\n"
        f"{renewal.proof['timestamp']}"
    ).encode()
    public = old_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(renewal.proof["signature"]), message, ec.ECDSA(hashes.SHA256()))
    assert abs(renewal.proof["timestamp"] - dt.datetime.now(dt.UTC).timestamp()) < 60


def test_rejected_renewal_recovers_through_staff_approval(
    tmp_path, portal, broker, make_agent
) -> None:
    portal.lifetime = 6
    portal.auto_approve_renewals = False
    token = portal.add_station("st-rec", [device_entry(broker)], poll_interval=1)
    state_dir = tmp_path / "state"
    make_agent(state_dir, portal=portal, token=token, broker=broker)
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.approve_all()
    assert wait_for(lambda: _status(state_dir).get("connected"), 15)
    first_serial = _entry(state_dir)["cert_serial"]
    assert wait_for(lambda: any(r.renewal for r in portal.requests.values()), 15)
    (renewal,) = [r for r in portal.requests.values() if r.renewal]
    portal.lifetime = 3600
    portal.reject(renewal.id, "not now")

    def recovery() -> list:
        return [r for r in portal.requests.values() if not r.renewal and r.id != 1]

    assert wait_for(lambda: len(recovery()) == 1, 15)
    (req,) = recovery()
    assert req.status == "pending"
    assert req.proof is None
    assert req.pubkey not in (portal.requests[1].pubkey, renewal.pubkey)  # a fresh key
    assert wait_for(lambda: (_status(state_dir).get("replacing") or {}).get("request_id"), 10)
    status = _status(state_dir)
    assert status["replacing"]["mode"] == "recovery"
    assert "not now" in status["replacing"]["why"]
    assert status["waiting_for"] == f"staff to approve recovery request {req.id} in the portal"
    portal.approve_all()

    def reconnected() -> bool:
        entry = _entry(state_dir)
        return entry["cert_serial"] != first_serial and bool(_status(state_dir).get("connected"))

    assert wait_for(reconnected, 20)
    assert _entry(state_dir)["request_id"] == req.id


def test_expired_certificate_recovers_and_reconnects(tmp_path, portal, broker, make_agent) -> None:
    portal.lifetime = 4
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    # The portal's renewal point is far off: only expiry can end this certificate.
    token = portal.add_station("st-exp", [device_entry(broker, renew_after=later)], poll_interval=1)
    state_dir = tmp_path / "state"
    make_agent(state_dir, portal=portal, token=token, broker=broker)
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.approve_all()
    portal.lifetime = 3600
    assert wait_for(lambda: _status(state_dir).get("connected"), 15)
    assert wait_for(lambda: len(portal.requests) == 2, 20)
    req = portal.requests[2]
    assert req.renewal is False
    assert req.status == "pending"
    assert wait_for(
        lambda: "expired" in ((_status(state_dir).get("replacing") or {}).get("why") or ""), 10
    )
    portal.approve_all()
    assert wait_for(
        lambda: _entry(state_dir)["request_id"] == 2 and _status(state_dir).get("connected"), 20
    )


def test_rejected_first_request_is_followed_by_a_new_one(tmp_path, portal, make_agent) -> None:
    token = portal.add_station("st-rej", [device_entry(None)], poll_interval=1)
    state_dir = tmp_path / "state"
    make_agent(state_dir, portal=portal, token=token)
    assert wait_for(lambda: len(portal.requests) == 1, 10)
    portal.reject(1, "wrong site")
    assert wait_for(lambda: len(portal.requests) == 2, 15)
    assert portal.requests[2].renewal is False
    assert portal.requests[2].pubkey != portal.requests[1].pubkey
    assert wait_for(lambda: _status(state_dir).get("status") == "awaiting_approval", 10)
    assert "wrong site" in _entry(state_dir)["recovery"]
    assert not list(state_dir.rglob("key-1.pem"))
