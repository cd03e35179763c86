"""Data plane: JITP through the MQTT/TLS front, refusals, SNI, pass-through to the broker."""

from __future__ import annotations

import json
import shutil
import subprocess

import paho.mqtt.client as mqtt
import pytest

from .helpers import (
    OPEN_POLICY,
    ROLE_ARN,
    PahoDevice,
    PlainSubscriber,
    device,
    jitp_template,
    make_ca,
    probe,
    register_ca,
    unique,
)


def _cert_status(iot, dev) -> str:
    from localaws.iot_extensions import fingerprint

    return iot.describe_certificate(certificateId=fingerprint(dev.cert))["certificateDescription"][
        "status"
    ]


def test_first_connection_dropped_then_messages_flow(aws, iot, jitp_ca, tmp_path):
    ca, ca_id = jitp_ca
    cn = unique("station")
    dev = device(tmp_path, ca, cn)
    assert probe(aws, dev, cn) == "dropped"

    thing = iot.describe_thing(thingName=cn)
    assert thing["attributes"] == {"country": "DE"}
    assert _cert_status(iot, dev) == "ACTIVE"
    principals = iot.list_thing_principals(thingName=cn)["principals"]
    assert len(principals) == 1
    policies = iot.list_attached_policies(target=principals[0])["policies"]
    assert len(policies) == 1
    by_ca = iot.list_certificates_by_ca(caCertificateId=ca_id)["certificates"]
    assert [c["certificateArn"] for c in by_ca] == principals

    sub = PlainSubscriber(*aws.broker_address, f"things/{cn}/#")
    client = PahoDevice(aws, dev, cn)
    try:
        assert client.connect(), f"second connection refused: {client.rc}"
        client.client.subscribe(f"things/{cn}/down", qos=1)
        client.client.publish(f"things/{cn}/up", b"hello", qos=1).wait_for_publish(10)
        msgs = sub.wait()
        assert (f"things/{cn}/up", b"hello") in msgs
        # broker -> device direction through the front
        sub.client.publish(f"things/{cn}/down", b"cmd", qos=1)
        assert client.wait_message(f"things/{cn}/down")[1] == b"cmd"
    finally:
        client.close()
        sub.close()


def test_mqtt5_client_passes(aws, iot, jitp_ca, tmp_path):
    ca, _ = jitp_ca
    cn = unique("v5")
    dev = device(tmp_path, ca, cn)
    assert probe(aws, dev, cn, level=5) == "dropped"
    assert probe(aws, dev, cn, level=5) == "connack:0"
    client = PahoDevice(aws, dev, cn, protocol=mqtt.MQTTv5)
    try:
        assert client.connect()
        client.client.subscribe(f"things/{cn}/echo", qos=1)
        client.client.publish(f"things/{cn}/echo", b"v5", qos=1).wait_for_publish(10)
        assert client.wait_message(f"things/{cn}/echo")[1] == b"v5"
    finally:
        client.close()
    assert probe(aws, dev, "not-the-thing", level=5) == f"connack:{0x87}"


def test_missing_parameter_keeps_pending_and_refuses(aws, iot, tmp_path):
    ca = make_ca(unique("ca"))
    register_ca(
        iot, ca, template_body=jitp_template(extra_params=("AWS::IoT::Certificate::Organization",))
    )
    cn = unique("no-org")
    dev = device(tmp_path, ca, cn)
    assert probe(aws, dev, cn) == "dropped"
    assert _cert_status(iot, dev) == "PENDING_ACTIVATION"
    assert probe(aws, dev, cn) == "connack:5"
    assert cn not in [t["thingName"] for t in iot.list_things()["things"]]

    with_org = device(tmp_path, ca, unique("with-org"), ORGANIZATION_NAME="ACME")
    assert probe(aws, with_org, with_org.name) == "dropped"
    assert probe(aws, with_org, with_org.name) == "connack:0"


def test_unknown_ca_refused(aws, iot, tmp_path):
    from localaws.iot_extensions import fingerprint

    stranger = make_ca(unique("stranger"))
    dev = device(tmp_path, stranger, unique("x"))
    refused = aws.stats.refused
    # With TLS 1.3 the client may see the server's alert or just the close.
    assert probe(aws, dev, dev.name) in ("tls_refused", "dropped")
    assert probe(aws, None, "no-cert") in ("tls_refused", "dropped")
    assert aws.stats.refused == refused + 2
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_certificate(certificateId=fingerprint(dev.cert))


def test_revoked_and_inactive_certificates_refused(aws, iot, jitp_ca, tmp_path):
    ca, _ = jitp_ca
    cn = unique("revoke")
    dev = device(tmp_path, ca, cn)
    assert probe(aws, dev, cn) == "dropped"
    assert probe(aws, dev, cn) == "connack:0"
    from localaws.iot_extensions import fingerprint

    iot.update_certificate(certificateId=fingerprint(dev.cert), newStatus="INACTIVE")
    assert probe(aws, dev, cn) == "connack:5"
    iot.update_certificate(certificateId=fingerprint(dev.cert), newStatus="ACTIVE")
    assert probe(aws, dev, cn) == "connack:0"
    iot.update_certificate(certificateId=fingerprint(dev.cert), newStatus="REVOKED")
    assert probe(aws, dev, cn) == "connack:5"


def test_wrong_client_id_refused_unless_policy_is_open(aws, iot, tmp_path):
    ca = make_ca(unique("ca"))
    register_ca(iot, ca, template_body=jitp_template())
    dev = device(tmp_path, ca, unique("strict"))
    assert probe(aws, dev, dev.name) == "dropped"
    assert probe(aws, dev, "someone-else") == "connack:5"
    assert probe(aws, dev, dev.name) == "connack:0"

    open_ca = make_ca(unique("open-ca"))
    register_ca(iot, open_ca, template_body=jitp_template(OPEN_POLICY))
    loose = device(tmp_path, open_ca, unique("loose"))
    assert probe(aws, loose, loose.name) == "dropped"
    assert probe(aws, loose, "any-client-id") == "connack:0"


def test_auto_registration_disabled_or_ca_inactive_refused(aws, iot, tmp_path):
    ca = make_ca(unique("ca"))
    ca_id = register_ca(iot, ca, template_body=jitp_template(), auto=False)
    dev = device(tmp_path, ca, unique("d"))
    assert probe(aws, dev, dev.name) == "dropped"
    assert dev.name not in [t["thingName"] for t in iot.list_things()["things"]]
    iot.update_ca_certificate(
        certificateId=ca_id, newAutoRegistrationStatus="ENABLE", newStatus="INACTIVE"
    )
    assert probe(aws, dev, dev.name) == "dropped"
    assert dev.name not in [t["thingName"] for t in iot.list_things()["things"]]
    iot.update_ca_certificate(certificateId=ca_id, newStatus="ACTIVE")
    assert probe(aws, dev, dev.name) == "dropped"
    assert probe(aws, dev, dev.name) == "connack:0"


def test_named_jitp_template(aws, iot, tmp_path):
    name = unique("jitp-tpl")
    iot.create_thing_group(thingGroupName=f"{name}-group")
    iot.create_thing_type(thingTypeName=f"{name}-type")
    iot.create_billing_group(billingGroupName=f"{name}-billing")
    body = json.loads(jitp_template())
    body["Resources"]["thing"]["Properties"]["ThingGroups"] = [f"{name}-group"]
    body["Resources"]["thing"]["Properties"]["ThingTypeName"] = f"{name}-type"
    body["Resources"]["thing"]["Properties"]["BillingGroup"] = f"{name}-billing"
    body["Resources"]["thing"]["Properties"]["ThingName"] = {
        "Fn::Join": ["", ["dev-", {"Ref": "AWS::IoT::Certificate::CommonName"}]]
    }
    iot.create_provisioning_template(
        templateName=name,
        templateBody=json.dumps(body),
        provisioningRoleArn=ROLE_ARN,
        enabled=True,
        type="JITP",
    )
    ca = make_ca(unique("ca"))
    register_ca(iot, ca, template_name=name)
    cn = unique("named")
    dev = device(tmp_path, ca, cn)
    assert probe(aws, dev, f"dev-{cn}") == "dropped"
    assert iot.describe_thing(thingName=f"dev-{cn}")["thingTypeName"] == f"{name}-type"
    assert iot.list_things_in_billing_group(billingGroupName=f"{name}-billing")["things"] == [
        f"dev-{cn}"
    ]
    members = iot.list_things_in_thing_group(thingGroupName=f"{name}-group")["things"]
    assert members == [f"dev-{cn}"]
    assert probe(aws, dev, f"dev-{cn}") == "connack:0"


def test_sni(aws, iot, tmp_path):
    ca = make_ca(unique("ca"))
    register_ca(iot, ca, template_body=jitp_template(), sni_only=True)
    dev = device(tmp_path, ca, unique("sni"))
    # An SNI_ONLY CA is only usable when the device names the account's endpoint.
    assert probe(aws, dev, dev.name) == "dropped"
    assert dev.name not in [t["thingName"] for t in iot.list_things()["things"]]
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert probe(aws, dev, dev.name, sni=endpoint) == "dropped"
    assert iot.describe_thing(thingName=dev.name)
    assert probe(aws, dev, dev.name, sni=endpoint) == "connack:0"
    # An endpoint of no account served here is refused.
    assert (
        probe(aws, dev, dev.name, sni="nosuchprefix0-ats.iot.eu-west-1.amazonaws.com") == "dropped"
    )
    # paho with the endpoint host name (hostname verification on) works too.
    client = PahoDevice(aws, dev, dev.name, host=endpoint)
    try:
        assert client.connect()
    finally:
        client.close()


def test_publish_outside_policy_disconnects(aws, iot, jitp_ca, tmp_path):
    ca, _ = jitp_ca
    cn = unique("nosy")
    dev = device(tmp_path, ca, cn)
    assert probe(aws, dev, cn) == "dropped"
    sub = PlainSubscriber(*aws.broker_address, "#")
    client = PahoDevice(aws, dev, cn)
    try:
        assert client.connect()
        client.client.publish(f"things/{cn}/ok", b"1", qos=0)
        client.client.publish("things/other/steal", b"2", qos=0)
        msgs = sub.wait(1)
        assert (f"things/{cn}/ok", b"1") in msgs
        assert not [t for t, _ in sub.wait(2, timeout=1) if t == "things/other/steal"]
    finally:
        client.close()
        sub.close()


@pytest.mark.skipif(not shutil.which("mosquitto_pub"), reason="mosquitto_pub not installed")
def test_mosquitto_pub_after_jitp_drop(aws, iot, jitp_ca, tmp_path):
    ca, _ = jitp_ca
    cn = unique("mosq")
    dev = device(tmp_path, ca, cn)
    sub = PlainSubscriber(*aws.broker_address, f"things/{cn}/#")
    cmd = [
        "mosquitto_pub",
        "-h",
        "127.0.0.1",
        "-p",
        str(aws.mqtt_port),
        "--cafile",
        str(aws.server_ca_path),
        "--cert",
        str(dev.cert_path),
        "--key",
        str(dev.key_path),
        "-i",
        cn,
        "-t",
        f"things/{cn}/telemetry",
        "-m",
        "42",
        "-q",
        "1",
    ]
    try:
        first = subprocess.run(cmd, capture_output=True, timeout=20, check=False)
        assert first.returncode != 0  # JITP drop
        second = subprocess.run(cmd, capture_output=True, timeout=20, check=False)
        assert second.returncode == 0, second.stderr
        assert (f"things/{cn}/telemetry", b"42") in sub.wait()
    finally:
        sub.close()


def test_jitr_without_template_publishes_registered_event(aws, iot, tmp_path):
    from localaws.iot_extensions import fingerprint

    ca = make_ca(unique("jitr-ca"))
    ca_id = register_ca(iot, ca)
    sub = PlainSubscriber(*aws.broker_address, f"$aws/events/certificates/registered/{ca_id}")
    dev = device(tmp_path, ca, unique("jitr"))
    try:
        assert probe(aws, dev, dev.name) == "dropped"
        (topic, payload), *_ = sub.wait()
    finally:
        sub.close()
    event = json.loads(payload)
    assert event["certificateId"] == fingerprint(dev.cert)
    assert event["certificateStatus"] == "PENDING_ACTIVATION"
    assert _cert_status(iot, dev) == "PENDING_ACTIVATION"
    # The operator's JITR function activates it and attaches a policy; then it connects.
    iot.update_certificate(certificateId=event["certificateId"], newStatus="ACTIVE")
    assert probe(aws, dev, dev.name) == "connack:5"  # no policy yet
    policy = unique("jitr-policy")
    iot.create_policy(policyName=policy, policyDocument=json.dumps(OPEN_POLICY))
    arn = iot.describe_certificate(certificateId=event["certificateId"])["certificateDescription"][
        "certificateArn"
    ]
    iot.attach_policy(policyName=policy, target=arn)
    assert probe(aws, dev, dev.name) == "connack:0"


def test_renewed_certificate_reuses_thing_and_policy(aws, iot, jitp_ca, tmp_path):
    ca, _ = jitp_ca
    cn = unique("renew")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = device(tmp_path / "old", ca, cn)
    assert probe(aws, old, cn) == "dropped"
    new = device(tmp_path / "new", ca, cn)
    assert probe(aws, new, cn) == "dropped"
    assert probe(aws, new, cn) == "connack:0"
    assert probe(aws, old, cn) == "connack:0"
    principals = iot.list_thing_principals(thingName=cn)["principals"]
    assert len(principals) == 2
    policies = {
        p["policyName"]
        for arn in principals
        for p in iot.list_attached_policies(target=arn)["policies"]
    }
    assert len(policies) == 1


def test_rsa_ca_and_device(aws, iot, tmp_path):
    ca = make_ca(unique("rsa-ca"), rsa_bits=2048)
    register_ca(iot, ca, template_body=jitp_template())
    dev = device(tmp_path, ca, unique("rsa-dev"), rsa_bits=2048)
    assert probe(aws, dev, dev.name) == "dropped"
    assert probe(aws, dev, dev.name) == "connack:0"
