"""Fleet provisioning by claim against a fake AWS responder on a real Mosquitto."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from cryptography import x509

from fleet_agent.state import StateStore
from tests.agent.conftest import KEY_PASSWORD, device_entry
from tests.agent.helpers import Subscriber, wait_for

CREATE = "$aws/certificates/create-from-csr/json"


class FakeFleetProvisioning:
    """Answers CreateCertificateFromCsr and RegisterThing like AWS IoT would."""

    def __init__(self, port: int, ca, *, reject_template: bool = False) -> None:
        self.ca = ca
        self.reject_template = reject_template
        self.tokens: dict[str, str] = {}
        self.registered: list[dict] = []
        self.csrs: list[str] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe(
            [(CREATE, 1), ("$aws/provisioning-templates/+/provision/json", 1)]
        )
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, client, _u, msg) -> None:
        body = json.loads(msg.payload)
        if msg.topic == CREATE:
            self.csrs.append(body["certificateSigningRequest"])
            csr = x509.load_pem_x509_csr(body["certificateSigningRequest"].encode())
            cert = self.ca.sign(csr.public_key(), "AWS IoT Certificate")
            token = f"own-{len(self.tokens) + 1}"
            self.tokens[token] = f"certid{len(self.tokens) + 1:04d}"
            client.publish(
                f"{CREATE}/accepted",
                json.dumps(
                    {
                        "certificatePem": cert,
                        "certificateId": self.tokens[token],
                        "certificateOwnershipToken": token,
                    }
                ),
                qos=1,
            )
            return
        template = msg.topic.split("/")[2]
        if self.reject_template or body.get("certificateOwnershipToken") not in self.tokens:
            client.publish(
                f"{msg.topic}/rejected",
                json.dumps(
                    {
                        "statusCode": 400,
                        "errorCode": "InvalidParameters",
                        "errorMessage": "template says no",
                    }
                ),
                qos=1,
            )
            return
        self.registered.append({"template": template, **body})
        serial = body["parameters"].get("SerialNumber", "x")
        client.publish(
            f"{msg.topic}/accepted",
            json.dumps({"thingName": f"claimed-{serial}", "deviceConfiguration": {"k": "v"}}),
            qos=1,
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_claim_provisioning_then_connects_with_permanent_cert(tmp_path, ca, broker, make_agent):
    claim_cert, claim_key = ca.issue_pair("claim-batch-7", "claim")
    responder = FakeFleetProvisioning(broker.plain_port, ca)
    sub = Subscriber(broker.plain_port, ["things/+/heartbeat"])
    claim = {
        "certificate": str(claim_cert),
        "key": str(claim_key),
        "template_name": "FleetTemplate",
        "parameters": {"SerialNumber": "SN42"},
    }
    agent = make_agent(
        tmp_path / "st",
        broker=broker,
        station="st-claim",
        local_devices=[device_entry(broker, claim=claim)],
    )
    assert agent.wait_connected(15), agent.device_report()
    assert wait_for(lambda: "things/claimed-SN42/heartbeat" in sub.topics_seen(), 5)
    assert responder.registered[0]["template"] == "FleetTemplate"
    assert responder.registered[0]["parameters"] == {"SerialNumber": "SN42"}
    state = StateStore(tmp_path / "st")
    state.load()
    entry = state.device("aws")
    assert entry["completed"] is True
    assert entry["completed_fp"] is True
    assert entry["thing_name"] == "claimed-SN42"
    assert entry["certificate_id"] == "certid0001"
    assert entry["provisioning"] == "claim"
    # Restart: no second provisioning.
    agent.stop()
    again = make_agent(
        tmp_path / "st",
        broker=broker,
        station="st-claim",
        local_devices=[device_entry(broker, claim=claim)],
    )
    assert again.wait_connected(15)
    assert len(responder.csrs) == 1
    # The private key never travelled: only a CSR went out, and its key is the station's.
    from cryptography.hazmat.primitives import serialization

    from fleet_agent.keys import load_private_key, public_key_der

    csr = x509.load_pem_x509_csr(responder.csrs[0].encode())
    key = load_private_key(entry["key_path"], KEY_PASSWORD)
    assert csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == public_key_der(key)
    responder.close()
    sub.close()


def test_claim_rejected_by_template_reports_error(tmp_path, ca, broker, make_agent):
    claim_cert, claim_key = ca.issue_pair("claim-batch-7", "claim")
    responder = FakeFleetProvisioning(broker.plain_port, ca, reject_template=True)
    claim = {"certificate": str(claim_cert), "key": str(claim_key), "template_name": "T"}
    agent = make_agent(
        tmp_path / "st",
        broker=broker,
        station="st-claim",
        local_devices=[device_entry(broker, claim=claim)],
    )
    worker_ready = lambda: "aws" in agent.workers and agent.workers["aws"].status == "error"  # noqa: E731
    assert wait_for(worker_ready, 15)
    assert "rejected the device" in agent.workers["aws"].last_error
    assert "template says no" in agent.workers["aws"].last_error
    state = StateStore(tmp_path / "st")
    state.load()
    assert state.device("aws")["completed"] is False
    responder.close()


def test_claim_mode_from_the_command_line_without_portal(tmp_path, ca, broker):
    from tests.agent.helpers import ENDPOINT
    from tests.agent.test_agent_cli import run_agent

    claim_cert, claim_key = ca.issue_pair("claim-batch-7", "claim")
    responder = FakeFleetProvisioning(broker.plain_port, ca)
    pw = tmp_path / "keypass"
    pw.write_text(KEY_PASSWORD)
    state_dir = tmp_path / "state"
    res = run_agent(
        "run", "--state-dir", str(state_dir), "--station", "st-9",
        "--device", "aws", "--endpoint", f"{ENDPOINT}:{broker.tls_port}",
        "--key-password-file", str(pw), "--heartbeat-interval", "1",
        "--broker-ca", str(ca.path), "--connect-host", f"127.0.0.1:{broker.tls_port}",
        "--claim-cert", str(claim_cert), "--claim-key", str(claim_key),
        "--claim-template", "FleetTemplate", "--claim-parameters", '{"SerialNumber": "CLI1"}',
        "--exit-when-connected", "--timeout", "20",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    state = json.loads((state_dir / "state.json").read_text())
    assert state["devices"]["aws"]["thing_name"] == "claimed-CLI1"
    assert state["devices"]["aws"]["completed_fp"] is True
    assert KEY_PASSWORD not in res.stderr
    responder.close()
