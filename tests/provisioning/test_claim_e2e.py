"""Claim provisioning end to end: portal setup -> bundle -> agent claim -> local AWS stand-in.

Uses the local AWS IoT stand-in (``localaws``) and the agent (``fleet_agent``): the first
test drives the agent's claim client directly, the second a whole ``Agent`` that provisions
itself, reconnects with its own certificate and publishes.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone

import localaws
from fleet_agent import claim as agent_claim
from fleet_agent import config as agent_config
from provisioning.aws import aws_service_get
from provisioning.claim import (
    claim_bundle_build,
    claim_setup_run,
    claim_setup_save,
    claim_setup_start,
)
from provisioning.models import AccessKey, ClaimSetup, Job
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
ROLE = "arn:aws:iam::123456789012:role/FleetProvisioning"


@dataclass
class ClaimBundle:
    """The stand-in with claim provisioning set up, and the portal's bundle unpacked."""

    aws: localaws.LocalAws
    setup: ClaimSetup
    path: Path
    meta: dict[str, Any]


@pytest.fixture
def claim_bundle(settings: Any, tmp_path: Path) -> Iterator[ClaimBundle]:
    with localaws.LocalAws(region="eu-west-1", state_dir=tmp_path / "aws") as aws:
        settings.AWS_ENDPOINT_URL = aws.endpoint_url
        service = aws_service_get()
        service.enabled = True
        service.save()
        AccessKey.objects.create(
            access_key_id=KEY_ID,
            secret="s" * 40,
            store_for="1d",
            purge_at=timezone.now() + timedelta(days=1),
        )
        setup = claim_setup_save(
            template_name="fleet-claim",
            region="eu-west-1",
            access_key_id=KEY_ID,
            role_arn=ROLE,
            thing_name_prefix="st-",
        )
        job = claim_setup_start(setup=setup, run_async=False)
        job = claim_setup_run(job_id=job.pk, setup_id=setup.pk)
        assert job.status == Job.Status.SUCCEEDED, job.result
        setup.refresh_from_db()
        bundle = tmp_path / "bundle"
        with zipfile.ZipFile(io.BytesIO(claim_bundle_build(setup=setup))) as zf:
            zf.extractall(bundle)
        yield ClaimBundle(aws, setup, bundle, json.loads((bundle / "claim.json").read_text()))


def test_station_provisions_itself_with_the_claim_bundle(claim_bundle: ClaimBundle) -> None:
    aws, bundle, meta = claim_bundle.aws, claim_bundle.path, claim_bundle.meta
    assert claim_bundle.setup.endpoint == aws.data_endpoint
    claim = agent_config.ClaimConfig.from_dict(
        {
            "template_name": meta["template_name"],
            "certificate": str(bundle / meta["certificate"]),
            "key": str(bundle / meta["key"]),
            "parameters": {"SerialNumber": "0042"},
        }
    )
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "st-0042")]))
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    result = agent_claim.provision_by_claim(
        claim=claim,
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
        endpoint=meta["endpoint"],
        port=aws.mqtt_port,
        client_id="claim-0042",
        ca_file=str(aws.server_ca_path),
        connect_addr=("127.0.0.1", aws.mqtt_port),
        timeout=30,
    )
    assert result.thing_name == "st-0042"

    iot = boto3.client(
        "iot",
        endpoint_url=aws.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key="s" * 40,
    )
    thing = iot.describe_thing(thingName="st-0042")
    assert thing["attributes"] == {"serialNumber": "0042"}
    cert = iot.describe_certificate(certificateId=result.certificate_id)
    assert cert["certificateDescription"]["status"] == "ACTIVE"
    arn = cert["certificateDescription"]["certificateArn"]
    assert [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]] == [
        "fleet-claim-device"
    ]
    assert iot.list_principal_things(principal=arn)["things"] == ["st-0042"]


def test_agent_provisions_by_claim_then_publishes_with_its_own_certificate(
    claim_bundle: ClaimBundle, tmp_path: Path
) -> None:
    """The whole station side: a real ``Agent`` with only the claim bundle (no portal)
    provisions itself through the stand-in, records the result in its state file,
    reconnects with the permanent certificate and its uplink reaches the broker."""
    import threading

    import paho.mqtt.client as mqtt

    from fleet_agent.agent import Agent
    from fleet_agent.state import StateStore

    aws, bundle, meta = claim_bundle.aws, claim_bundle.path, claim_bundle.meta

    seen: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *a: c.subscribe("things/#", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: seen.append((m.topic, m.payload))
    sub.connect(*aws.broker_address)
    sub.loop_start()
    assert subscribed.wait(10)

    state_dir = tmp_path / "station"
    agent = Agent(
        agent_config.AgentOptions(
            state_dir=state_dir,
            station="st-0777",
            broker_ca=str(aws.server_ca_path),
            connect_host=f"127.0.0.1:{aws.mqtt_port}",
            reconnect_max=2.0,
            stable_after=2.0,
            local_devices=[
                {
                    "name": "aws",
                    "endpoint": meta["endpoint"],
                    "port": aws.mqtt_port,
                    "key_password": "station-key-pw",
                    "heartbeat_interval": 1,
                    "claim": {
                        "template_name": meta["template_name"],
                        "certificate": str(bundle / meta["certificate"]),
                        "key": str(bundle / meta["key"]),
                        "parameters": {"SerialNumber": "0777"},
                    },
                }
            ],
        )
    )
    agent.start()
    try:
        assert agent.wait_connected(40), agent.device_report()
        recorded = StateStore(state_dir)
        recorded.load()
        device = recorded.device("aws")
        assert device["provisioning"] == "claim"
        assert device["completed"] is True
        assert device["thing_name"] == "st-0777"
        cert_id = device["certificate_id"]
        agent.publish_point("aws", "temp", 21.5)
        wait_for(
            lambda: any(t == "things/st-0777/uplink/temp" for t, _ in seen),
            timeout=15,
            message="the uplink through the stand-in",
        )
        uplinks = [json.loads(p) for t, p in seen if t == "things/st-0777/uplink/temp"]
        assert [u["value"] for u in uplinks] == [21.5]
        assert any(t == "things/st-0777/heartbeat" for t, _ in seen)
    finally:
        agent.stop()
        sub.loop_stop()
        sub.disconnect()

    iot = aws.boto3_client("iot")
    cert = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    assert iot.list_principal_things(principal=cert["certificateArn"])["things"] == ["st-0777"]
    assert aws.stats.fleet_provisioned >= 1
