"""Fleet provisioning by claim over MQTT, answered by the stand-in itself."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .helpers import DEVICE_POLICY, ROLE_ARN, PahoDevice, PlainSubscriber, unique, write_device

CLAIM_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": [
                "arn:aws:iot:*:*:topic/$aws/certificates/*",
                "arn:aws:iot:*:*:topic/$aws/provisioning-templates/*",
            ],
        },
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": [
                "arn:aws:iot:*:*:topicfilter/$aws/certificates/*",
                "arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/*",
            ],
        },
    ],
}


def _fleet_template(policy_name: str) -> str:
    return json.dumps(
        {
            "Parameters": {
                "SerialNumber": {"Type": "String"},
                "AWS::IoT::Certificate::Id": {"Type": "String"},
            },
            "Resources": {
                "thing": {
                    "Type": "AWS::IoT::Thing",
                    "Properties": {
                        "ThingName": {"Fn::Join": ["", ["station-", {"Ref": "SerialNumber"}]]},
                        "AttributePayload": {"serial": {"Ref": "SerialNumber"}},
                    },
                },
                "certificate": {
                    "Type": "AWS::IoT::Certificate",
                    "Properties": {
                        "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                        "Status": "Active",
                    },
                },
                "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": policy_name}},
            },
            "DeviceConfiguration": {
                "telemetryTopic": {"Fn::Sub": "things/station-${SerialNumber}/up"}
            },
        }
    )


@pytest.fixture
def claim(aws, iot, tmp_path):
    name = unique("fleet")
    iot.create_policy(policyName=f"{name}-device", policyDocument=json.dumps(DEVICE_POLICY))
    iot.create_policy(policyName=f"{name}-claim", policyDocument=json.dumps(CLAIM_POLICY))
    iot.create_provisioning_template(
        templateName=name,
        templateBody=_fleet_template(f"{name}-device"),
        provisioningRoleArn=ROLE_ARN,
        enabled=True,
        type="FLEET_PROVISIONING",
    )
    out = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName=f"{name}-claim", target=out["certificateArn"])
    cert = x509.load_pem_x509_certificate(out["certificatePem"].encode())
    key = serialization.load_pem_private_key(out["keyPair"]["PrivateKey"].encode(), None)
    return name, write_device(tmp_path, f"{name}-claim", cert, key)


def _request(client: PahoDevice, topic: str, payload: dict) -> tuple[str, dict]:
    client.messages.clear()
    for suffix in ("accepted", "rejected"):
        client.client.subscribe(f"{topic}/{suffix}", qos=1)
    client.client.publish(topic, json.dumps(payload), qos=1)
    t, p = client.wait_message(topic + "/")
    return t.rsplit("/", 1)[1], json.loads(p)


def test_claim_round_trip_with_csr(aws, iot, claim, tmp_path):
    name, claim_dev = claim
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
        .sign(key, hashes.SHA256())
    )
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    client = PahoDevice(aws, claim_dev, unique("claim"))
    try:
        assert client.connect(), client.rc
        outcome, body = _request(
            client, "$aws/certificates/create-from-csr/json", {"certificateSigningRequest": csr_pem}
        )
        assert outcome == "accepted", body
        assert set(body) >= {"certificateId", "certificatePem", "certificateOwnershipToken"}
        assert (
            iot.describe_certificate(certificateId=body["certificateId"])["certificateDescription"][
                "status"
            ]
            == "INACTIVE"
        )

        outcome, bad = _request(
            client,
            f"$aws/provisioning-templates/{name}/provision/json",
            {"certificateOwnershipToken": "forged", "parameters": {"SerialNumber": "1"}},
        )
        assert outcome == "rejected"
        assert bad["errorCode"] == "InvalidCertificateOwnershipToken"
        assert bad["statusCode"] == 400

        outcome, missing = _request(
            client,
            f"$aws/provisioning-templates/{name}/provision/json",
            {"certificateOwnershipToken": body["certificateOwnershipToken"], "parameters": {}},
        )
        assert outcome == "rejected"
        assert missing["errorCode"] == "InvalidParameters"

        serial = unique("sn")
        outcome, done = _request(
            client,
            f"$aws/provisioning-templates/{name}/provision/json",
            {
                "certificateOwnershipToken": body["certificateOwnershipToken"],
                "parameters": {"SerialNumber": serial},
            },
        )
        assert outcome == "accepted", done
        assert done["thingName"] == f"station-{serial}"
        assert done["deviceConfiguration"] == {"telemetryTopic": f"things/station-{serial}/up"}
    finally:
        client.close()

    thing = done["thingName"]
    assert iot.describe_thing(thingName=thing)["attributes"] == {"serial": serial}
    cert = iot.describe_certificate(certificateId=body["certificateId"])["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    permanent = write_device(
        tmp_path, thing, x509.load_pem_x509_certificate(body["certificatePem"].encode()), key
    )
    sub = PlainSubscriber(*aws.broker_address, f"things/{thing}/#")
    device = PahoDevice(aws, permanent, thing)
    try:
        assert device.connect(), device.rc
        device.client.publish(f"things/{thing}/up", b"21.5", qos=1).wait_for_publish(10)
        assert (f"things/{thing}/up", b"21.5") in sub.wait()
    finally:
        device.close()
        sub.close()


def test_create_keys_and_certificate_over_mqtt(aws, iot, claim):
    name, claim_dev = claim
    client = PahoDevice(aws, claim_dev, unique("claim"))
    try:
        assert client.connect()
        outcome, body = _request(client, "$aws/certificates/create/json", {})
        assert outcome == "accepted"
        assert "PRIVATE KEY" in body["privateKey"]
        outcome, done = _request(
            client,
            f"$aws/provisioning-templates/{name}/provision/json",
            {
                "certificateOwnershipToken": body["certificateOwnershipToken"],
                "parameters": {"SerialNumber": unique("k")},
            },
        )
        assert outcome == "accepted"
        outcome, err = _request(
            client, "$aws/provisioning-templates/no-such-template/provision/json", {}
        )
        assert outcome == "rejected"
        assert err["statusCode"] == 404
    finally:
        client.close()
    assert iot.describe_thing(thingName=done["thingName"])


def test_claim_certificate_cannot_publish_elsewhere(aws, iot, claim):
    _, claim_dev = claim
    sub = PlainSubscriber(*aws.broker_address, "claimtest/#")
    client = PahoDevice(aws, claim_dev, unique("claim"))
    try:
        assert client.connect()
        client.client.publish("claimtest/x", b"nope")
        assert sub.wait(1, timeout=1) == []
    finally:
        client.close()
        sub.close()
