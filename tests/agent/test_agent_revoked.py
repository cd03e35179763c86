"""A revoked certificate: the device takes the recovery path (fresh key, a first request
that staff approve) when the portal refuses its renewal with ``certificate_revoked`` or its
configuration reports the held certificate revoked; the agent and its other devices go on.
A 403 about the station token still stops the agent (TLS Mosquitto)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

from fleet_agent.cli import main as fleet_agent_main
from tests.agent.conftest import connected_agent, device_entry
from tests.agent.helpers import wait_for


def _status(state_dir: Path, name: str = "aws") -> dict:
    try:
        doc = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return next((d for d in doc.get("devices", []) if d["name"] == name), {})


def _serial(state_dir: Path) -> str:
    return json.loads((state_dir / "state.json").read_text())["devices"]["aws"]["cert_serial"]


def _due_now(portal, token: str, **extra: object) -> None:  # noqa: ANN001
    device = portal.stations[token].devices[0]
    device.update(renew_after=dt.datetime.now(dt.UTC).isoformat(), **extra)


def test_renewal_refused_as_revoked_recovers_and_the_agent_goes_on(
    tmp_path, portal, broker, make_agent, caplog, capsys
) -> None:
    caplog.set_level(logging.INFO, logger="fleet_agent")
    token = portal.add_station(
        "st-rev", [device_entry(broker), device_entry(broker, name="other")], poll_interval=1
    )
    state_dir = tmp_path / "state"
    agent = make_agent(state_dir, portal=portal, token=token, broker=broker)
    assert wait_for(lambda: len(portal.requests) == 2, 10)
    portal.approve_all()
    assert agent.wait_connected(15), agent.device_report()
    old_serial = _serial(state_dir)
    portal.refuse_renewals = (403, "certificate_revoked")
    _due_now(portal, token)

    def recovery() -> list:
        return [r for r in portal.requests.values() if r.id > 2 and r.device == "aws"]

    assert wait_for(lambda: len(recovery()) == 1, 15)
    (req,) = recovery()
    assert (req.renewal, req.proof, req.status) == (False, None, "pending")
    assert req.pubkey != portal.requests[1].pubkey  # a fresh key
    assert wait_for(lambda: (_status(state_dir).get("replacing") or {}).get("request_id"), 10)
    status = _status(state_dir)
    assert status["replacing"]["mode"] == "recovery"
    assert "revoked" in status["replacing"]["why"]
    assert status["waiting_for"] == f"staff to approve recovery request {req.id} in the portal"
    assert "the certificate was revoked" in caplog.text
    assert "recovery: a new key and an onboarding request that staff must approve" in caplog.text
    capsys.readouterr()
    assert fleet_agent_main(["status", "--state-dir", str(state_dir)]) == 0
    printed = capsys.readouterr().out
    assert "recovery: the certificate was revoked" in printed
    assert f"waiting for: staff to approve recovery request {req.id} in the portal" in printed
    # The agent keeps running, and so does its other device.
    assert agent.fatal_error is None
    other = agent.workers["other"]
    beats = other.heartbeats_sent
    assert wait_for(lambda: other.heartbeats_sent > beats + 1, 5)
    assert other.connected
    portal.approve_all()
    assert wait_for(
        lambda: _serial(state_dir) != old_serial and agent.workers["aws"].status == "connected", 20
    )


def test_a_403_about_the_station_token_still_stops_the_agent(
    tmp_path, portal, broker, make_agent
) -> None:
    state_dir = tmp_path / "state"
    agent, token = connected_agent(make_agent, portal, broker, state_dir, "st-tok")
    portal.refuse_renewals = (403, "forbidden")
    _due_now(portal, token)
    assert wait_for(lambda: agent.fatal_error is not None, 15)
    assert agent.fatal_error == "the portal rejected the station token (403); check --token-file."
    assert [r.id for r in portal.requests.values()] == [1]


def test_configuration_reporting_the_certificate_revoked_recovers(
    tmp_path, portal, broker, make_agent
) -> None:
    state_dir = tmp_path / "state"
    agent, token = connected_agent(make_agent, portal, broker, state_dir, "st-cfg")
    old_serial = _serial(state_dir)
    device = portal.stations[token].devices[0]
    device.update(certificate_serial=old_serial.upper(), certificate_status="revoked")
    assert wait_for(lambda: len(portal.requests) == 2, 15)
    req = portal.requests[2]
    assert (req.renewal, req.status) == (False, "pending")
    assert wait_for(lambda: (_status(state_dir).get("replacing") or {}).get("request_id"), 10)
    assert f"(serial {old_serial}) revoked" in _status(state_dir)["replacing"]["why"]
    # Offline (AWS refuses the revoked certificate): no reconnects with it, staff are next.
    worker = agent.workers["aws"]
    assert wait_for(lambda: not worker.connected and worker.client is None, 10)
    assert wait_for(lambda: _status(state_dir).get("status") == "awaiting_approval", 10)
    portal.approve_all()
    assert wait_for(
        lambda: _serial(state_dir) != old_serial and agent.workers["aws"].status == "connected", 20
    )
    # The configuration still reports the old certificate revoked: that is not the new one.
    time.sleep(3)
    assert len(portal.requests) == 2
    assert not _status(state_dir).get("replacing")
