"""One renewal point gives one renewal, end to end: the renewed certificate is backdated five
minutes, and until its next poll the configuration still carries the predecessor's
``renew_after``: with the predecessor's ``certificate_serial`` (a 1.1 portal) or without any
serial (an older portal). Neither may renew the new certificate again (TLS Mosquitto)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from tests.agent.conftest import connected_agent
from tests.agent.helpers import wait_for


def _entry(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())["devices"]["aws"]


def _colons(serial_hex: str) -> str:
    """The portal's spelling of a serial: upper case, pairs of digits, colons."""
    digits = serial_hex.upper().zfill(len(serial_hex) + len(serial_hex) % 2)
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


@pytest.mark.parametrize("with_serial", [True, False], ids=["portal-1.1", "older-portal"])
def test_stale_renew_after_does_not_renew_the_backdated_successor(
    tmp_path, portal, broker, make_agent, with_serial
) -> None:
    portal.backdate = 300.0
    state_dir = tmp_path / "state"
    agent, token = connected_agent(make_agent, portal, broker, state_dir, "st-once")
    old_serial = _entry(state_dir)["cert_serial"]

    # Staff force a renewal of the current certificate: a point just passed, which lies
    # after the successor's backdated notBefore.
    device = portal.stations[token].devices[0]
    device["renew_after"] = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)).isoformat()
    if with_serial:
        device["certificate_serial"] = _colons(old_serial)

    def renewed() -> bool:
        worker = agent.workers["aws"]
        return _entry(state_dir)["cert_serial"] != old_serial and worker.status == "connected"

    assert wait_for(renewed, 15)
    new = _entry(state_dir)
    not_before = dt.datetime.fromisoformat(new["cert_not_before"].replace("Z", "+00:00"))
    assert not_before < dt.datetime.fromisoformat(device["renew_after"])  # backdated
    # Several polls and renewal checks with the predecessor's point still configured.
    time.sleep(4)
    renewals = [r for r in portal.requests.values() if r.renewal]
    assert len(renewals) == 1, [(r.id, r.status) for r in renewals]
    assert _entry(state_dir)["cert_serial"] == new["cert_serial"]
    assert "pending_renewal" not in _entry(state_dir) or not _entry(state_dir)["pending_renewal"]
    assert agent.workers["aws"].renew_due_at() > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
