"""Fixtures for the station agent tests (plain pytest, no Django)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_agent.agent import Agent
from fleet_agent.config import AgentOptions
from tests.agent.helpers import ENDPOINT, Broker, FakePortal, TestCA, wait_for

KEY_PASSWORD = "correct horse battery"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    d = tmp_path / "ca"
    d.mkdir()
    return TestCA(d)


@pytest.fixture
def portal(ca: TestCA) -> Iterator[FakePortal]:
    p = FakePortal(ca)
    yield p
    p.close()


@pytest.fixture
def broker(tmp_path: Path, ca: TestCA) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", ca)
    b.start()
    yield b
    b.stop()


def device_entry(broker: Broker | None, name: str = "aws", **overrides: Any) -> dict[str, Any]:
    entry = {
        "name": name,
        "endpoint": ENDPOINT,
        "port": broker.tls_port if broker else 8883,
        "key_password": KEY_PASSWORD,
        "comment": "installed by test",
        "key_type": "ec-p256",
        "renew_after": None,
        "heartbeat_interval": 1,
        "uplink_topic": "things/{thing}/uplink/{point}",
        "downlink_topic": "things/{thing}/downlink",
        "heartbeat_topic": "things/{thing}/heartbeat",
    }
    entry.update(overrides)
    return entry


@pytest.fixture
def make_agent(tmp_path: Path, ca: TestCA) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []
    logging.getLogger("fleet_agent").setLevel(logging.INFO)

    def factory(
        state_dir: Path,
        *,
        portal: FakePortal | None = None,
        token: str | None = None,
        broker: Broker | None = None,
        start: bool = True,
        **kw: Any,
    ) -> Agent:
        opts: dict[str, Any] = {
            "state_dir": state_dir,
            "portal": portal.url if portal else None,
            "token": token,
            "broker_ca": str(ca.path),
            "connect_host": f"127.0.0.1:{broker.tls_port}" if broker else None,
            "poll_interval": 1.0,
            "request_poll_max": 0.3,
            "portal_retry_max": 1.0,
            "reconnect_max": 2.0,
            "stable_after": 2.0,
            "renewal_retry": 1.0,
        }
        opts.update(kw)
        on_command = opts.pop("on_command", None)
        agent = Agent(AgentOptions(**opts), on_command=on_command)
        agents.append(agent)
        if start:
            agent.start()
        return agent

    yield factory
    for a in agents:
        a.stop()


def connected_agent(
    make_agent: Callable[..., Agent],
    portal: FakePortal,
    broker: Broker,
    state_dir: Path,
    station: str,
    **kw: Any,
) -> tuple[Agent, str]:
    """An agent whose one device ``aws`` is onboarded (approved) and connected; its token."""
    token = portal.add_station(station, [device_entry(broker)], poll_interval=1)
    agent = make_agent(state_dir, portal=portal, token=token, broker=broker, **kw)
    assert wait_for(lambda: len(portal.requests) >= 1, 10)
    portal.approve_all()
    assert agent.wait_connected(15), agent.device_report()
    return agent, token
