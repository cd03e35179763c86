"""End to end: a connection bound through the staff API steers a real agent's MQTT topics.

Real pieces only: the portal's live server (agent config + onboarding API), a real Celery
worker signing the CSR, the in-process ``Agent``, and a private Mosquitto whose TLS
listener requires client certificates from the portal's CA. A staff user binds the
station's device to a connection while the agent runs; the agent picks the change up
through its ETag poll, publishes its next point on exactly the bound uplink topic and takes
a command from the bound downlink topic once, even when the broker delivers it twice.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command

from fleet_agent.agent import Agent
from fleet_agent.config import AgentOptions
from provisioning.fleet import fleet_install_create, fleet_install_run
from provisioning.models import FleetInstallStation
from tests.agent.helpers import ENDPOINT, Broker, Subscriber, TestCA
from tests.conftest import wait_for
from tests.devices.factories import DEVICE_PASSWORD, make_profile, make_station
from tests.provisioning.connection_fixtures import Api

UP = "fleet/{station}/{device}/up/{point}"
DOWN = "fleet/{station}/{device}/down"


@pytest.mark.django_db(transaction=True)
def test_bound_connection_topics_reach_a_real_agent(
    live_server: Any, celery_worker_process: Any, tmp_path: Path, api: Api, payload: Any
) -> None:
    logging.getLogger("fleet_agent").setLevel(logging.INFO)
    celery_worker_process(queues="signing")
    server_ca = TestCA(_mkdir(tmp_path / "server-ca"))
    broker = Broker(tmp_path / "broker", server_ca)
    portal_ca = tmp_path / "portal-ca.pem"
    portal_ca.write_text(make_profile().ca.certificate_pem)
    broker.conf.write_text(
        broker.conf.read_text().replace(f"cafile {server_ca.path}", f"cafile {portal_ca}")
    )
    broker.start()
    commands: list[dict[str, Any]] = []
    agent: Agent | None = None
    sub = None
    try:
        sub = Subscriber(broker.plain_port, ["fleet/#", "things/+/uplink/#"])
        _station, token = make_station("st-9")
        install = fleet_install_create(
            device_name="aws",
            profile=make_profile(),
            endpoint=ENDPOINT,
            port=broker.tls_port,
            key_password=DEVICE_PASSWORD,
            stations=["st-9"],
            comment="connection e2e",
        )
        fleet_install_run(install_id=install.pk)
        agent = Agent(
            AgentOptions(
                state_dir=tmp_path / "agent",
                portal=live_server.url,
                token=token,
                broker_ca=str(server_ca.path),
                connect_host=f"127.0.0.1:{broker.tls_port}",
                poll_interval=0.5,
                request_poll_max=0.5,
                portal_retry_max=1.0,
                reconnect_max=2.0,
                stable_after=2.0,
                renewal_retry=1.0,
            ),
            on_command=lambda device, record: commands.append(record),
        )
        agent.start()
        wait_for(
            lambda: install.stations.filter(
                status=FleetInstallStation.Status.AWAITING_APPROVAL
            ).exists(),
            timeout=30,
            message="the CSR awaiting approval",
        )
        call_command("approve_requests", "--all-pending", "--wait", "30")
        assert agent.wait_connected(30), agent.device_report()

        # Unbound: the protocol's default topic.
        agent.publish_point("aws", "temp", 1)
        wait_for(lambda: len(sub.messages) == 1, timeout=10, message="the default uplink")
        assert sub.messages[0].topic == "things/st-9:aws/uplink/temp"

        cid = api(
            "POST", "/connections", payload(uplinkTopicPattern=UP, downlinkTopicPattern=DOWN)
        ).json()["id"]
        r = api(
            "PUT",
            f"/connections/{cid}/devices",
            {"devices": [{"station": "st-9", "device": "aws"}]},
        )
        assert r.status_code == 200, r.content
        worker = agent.workers["aws"]
        # The downlink pattern changed, so the agent reconnects and subscribes to the new one.
        wait_for(
            lambda: (
                worker.cfg.uplink_topic == UP
                and worker.cfg.downlink_topic == DOWN
                and worker.connected
            ),
            timeout=20,
            message="the agent to take the binding",
        )

        agent.publish_point("aws", "temp", 2)
        wait_for(lambda: len(sub.messages) == 2, timeout=10, message="the bound uplink")
        time.sleep(0.3)
        assert [m.topic for m in sub.messages] == [
            "things/st-9:aws/uplink/temp",
            "fleet/st-9/aws/up/temp",
        ]
        assert json.loads(sub.messages[1].payload)["value"] == 2
        assert agent.queue.depth("aws") == 0

        pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", broker.plain_port)
        pub.loop_start()
        try:
            # The new subscription may still be on its way: probe until one arrives.
            probe = 0
            while not commands and probe < 40:
                probe += 1
                pub.publish(
                    "fleet/st-9/aws/down", json.dumps({"id": f"probe-{probe}"}), qos=1
                ).wait_for_publish(5)
                time.sleep(0.25)
            assert commands, "no downlink reached the agent on the bound topic"
            before = len(commands)
            for _ in range(2):  # the same command delivered twice (QoS 1 redelivery)
                pub.publish(
                    "fleet/st-9/aws/down",
                    json.dumps({"id": "cmd-42", "action": "open-valve"}),
                    qos=1,
                ).wait_for_publish(5)
            # The old default topic is no longer subscribed.
            pub.publish(
                "things/st-9:aws/downlink", json.dumps({"id": "stale"}), qos=1
            ).wait_for_publish(5)
            wait_for(
                lambda: any(c["command_id"] == "cmd-42" for c in commands),
                timeout=10,
                message="the command on the bound downlink topic",
            )
            time.sleep(0.5)
        finally:
            pub.loop_stop()
            pub.disconnect()
        new = commands[before:]
        assert [c["command_id"] for c in new] == ["cmd-42"]
        assert new[0]["topic"] == "fleet/st-9/aws/down"
        assert new[0]["payload"]["action"] == "open-valve"
        inbox = tmp_path / "agent" / "inbox" / "aws"
        assert len(list(inbox.glob("cmd-cmd-42*.json"))) == 1
    finally:
        if agent is not None:
            agent.stop()
        if sub is not None:
            sub.close()
        broker.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
