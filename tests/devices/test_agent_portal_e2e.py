"""End to end: the real station agent against the portal's live server and a real Mosquitto.

The first test: real agents pull their desired configuration from a fleet install and report
state, which moves the install's rows. The second is the full chain (CSR -> approval by the
signing service -> certificate -> TLS connection -> heartbeat).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.core.management import call_command

from devices.models import MqttDevice, Station
from fleet_agent.agent import Agent
from fleet_agent.config import AgentOptions
from provisioning.fleet import fleet_install_create, fleet_install_run
from provisioning.models import FleetInstallStation
from tests.agent.helpers import ENDPOINT, Broker, Subscriber, TestCA
from tests.conftest import wait_for
from tests.devices.factories import DEVICE_PASSWORD, make_profile, make_station

S = FleetInstallStation.Status


@pytest.fixture
def agents(tmp_path: Path):  # noqa: ANN201
    started: list[Agent] = []
    logging.getLogger("fleet_agent").setLevel(logging.INFO)

    def start(live_server, token: str, name: str, **kw: object) -> Agent:  # noqa: ANN001
        opts = {
            "state_dir": tmp_path / name,
            "portal": live_server.url,
            "token": token,
            "poll_interval": 0.5,
            "request_poll_max": 0.5,
            "portal_retry_max": 1.0,
            "reconnect_max": 2.0,
            "stable_after": 2.0,
            "renewal_retry": 1.0,
        }
        opts.update(kw)
        agent = Agent(AgentOptions(**opts))
        started.append(agent)
        agent.start()
        return agent

    yield start
    for agent in started:
        agent.stop()


def _start_install(names: list[str], port: int = 8883):  # noqa: ANN202
    install = fleet_install_create(
        device_name="aws",
        profile=make_profile(),
        endpoint=ENDPOINT,
        port=port,
        key_password=DEVICE_PASSWORD,
        stations=names,
        comment="e2e",
    )
    fleet_install_run(install_id=install.pk)
    return install


@pytest.mark.django_db(transaction=True)
def test_real_agents_pull_the_fleet_install_and_report(live_server, agents) -> None:  # noqa: ANN001
    tokens = {f"st-{i}": make_station(f"st-{i}")[1] for i in range(3)}
    install = _start_install(list(tokens))
    running = {name: agents(live_server, token, name) for name, token in tokens.items()}
    # The agents report first (stations come online), then get the device placed and fetch it.
    wait_for(
        lambda: Station.objects.filter(last_seen_at__isnull=False).count() == 3,
        timeout=20,
        message="three stations to report",
    )
    wait_for(
        lambda: not install.stations.filter(status=S.QUEUED).exists(),
        timeout=20,
        message="every row to be delivered",
    )
    assert MqttDevice.objects.filter(name="aws").count() == 3
    station = Station.objects.get(name="st-0")
    assert station.agent_version
    assert station.reported_state["devices"] is not None
    wait_for(
        lambda: Station.objects.get(name="st-0").reported_state.get("devices"),
        timeout=20,
        message="a per-device report",
    )
    # No agent was told to stop: the token was accepted and the protocol understood.
    assert all(agent.fatal_error is None for agent in running.values())


@pytest.mark.django_db(transaction=True)
def test_three_agents_onboard_through_the_portal_connect_and_heartbeat(  # noqa: ANN001
    live_server, agents, tmp_path, celery_worker_process
) -> None:
    celery_worker_process(queues="signing")  # approved CSRs are signed by a real worker
    server_ca = TestCA(_mkdir(tmp_path / "server-ca"))
    broker = Broker(tmp_path / "broker", server_ca)
    # Client certificates must chain to the portal's signing CA, nothing else.
    portal_ca = tmp_path / "portal-ca.pem"
    portal_ca.write_text(make_profile().ca.certificate_pem)
    broker.conf.write_text(
        broker.conf.read_text().replace(f"cafile {server_ca.path}", f"cafile {portal_ca}")
    )
    broker.start()
    try:
        sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
        tokens = {f"st-{i}": make_station(f"st-{i}")[1] for i in range(3)}
        install = _start_install(list(tokens), port=broker.tls_port)
        running = [
            agents(
                live_server,
                token,
                name,
                broker_ca=str(server_ca.path),
                connect_host=f"127.0.0.1:{broker.tls_port}",
            )
            for name, token in tokens.items()
        ]
        wait_for(
            lambda: install.stations.filter(status=S.AWAITING_APPROVAL).count() == 3,
            timeout=30,
            message="three CSRs awaiting approval",
        )
        call_command("approve_requests", "--all-pending", "--wait", "30")
        for agent in running:
            assert agent.wait_connected(30), agent.device_report()
        wait_for(lambda: len(sub.topics_seen()) == 3, timeout=20, message="three heartbeats")
        assert sub.topics_seen() == {f"things/st-{i}:aws/heartbeat" for i in range(3)}
        wait_for(
            lambda: install.stations.filter(status=S.CONNECTED).count() == 3,
            timeout=20,
            message="every row connected",
        )
        assert set(MqttDevice.objects.values_list("status", flat=True)) == {"connected"}
        sub.close()
    finally:
        broker.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
