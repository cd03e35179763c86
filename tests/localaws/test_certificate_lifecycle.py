"""Certificates leaving ACTIVE: live sessions closed, reconnects refused, AWS's delete rules,
thing groups and the thing-principal listings, all through boto3 against the stand-in."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError

from localaws.iot_extensions import fingerprint
from tests.conftest import wait_for

from .helpers import (
    PahoDevice,
    PlainSubscriber,
    device,
    probe,
    unique,
)


def _provisioned(aws, iot, ca, tmp_path):
    """A device JITP registered (ACTIVE, thing = CN, policy attached)."""
    cn = unique("station")
    dev = device(tmp_path, ca, cn)
    assert probe(aws, dev, cn) == "dropped"
    return cn, dev, fingerprint(dev.cert)


class Disconnects:
    """Counts paho's on_disconnect callbacks of a PahoDevice."""

    def __init__(self, client: PahoDevice) -> None:
        self.event = threading.Event()
        client.client.reconnect_delay_set(60, 120)  # no quick reconnect behind the test's back
        client.client.on_disconnect = lambda *a: self.event.set()


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("new_status", ["REVOKED", "INACTIVE"])
def test_leaving_active_closes_live_sessions_and_refuses_reconnects(
    aws, iot, jitp_ca, tmp_path, new_status
):
    cn, dev, cert_id = _provisioned(aws, iot, jitp_ca[0], tmp_path)
    other_cn, other_dev, _ = _provisioned(aws, iot, jitp_ca[0], tmp_path)
    sub = PlainSubscriber(*aws.broker_address, "things/#")
    victim, bystander = PahoDevice(aws, dev, cn), PahoDevice(aws, other_dev, other_cn)
    try:
        assert victim.connect()
        assert bystander.connect()
        gone = Disconnects(victim)
        wait_for(lambda: aws.front.sessions_of(cert_id) == 1, message="the session registered")
        iot.update_certificate(certificateId=cert_id, newStatus=new_status)
        assert gone.event.wait(10), "the session of the deactivated certificate stayed open"
        assert aws.front.sessions_of(cert_id) == 0
        # The other device's session is untouched: its publish still reaches the broker.
        bystander.client.publish(f"things/{other_cn}/data", b"still here", qos=1).wait_for_publish(
            10
        )
        wait_for(
            lambda: any(t == f"things/{other_cn}/data" for t, _ in sub.messages),
            message="the bystander's message",
        )
        # A new connection with the certificate is refused with CONNACK "not authorized".
        assert probe(aws, dev, cn) == "connack:5"
    finally:
        victim.close()
        bystander.close()
        sub.close()


def test_update_certificate_statuses_as_aws(aws, iot, jitp_ca, tmp_path):
    _, _, cert_id = _provisioned(aws, iot, jitp_ca[0], tmp_path)
    with pytest.raises(ClientError) as bogus:
        iot.update_certificate(certificateId=cert_id, newStatus="PENDING_TRANSFER")
    assert _error(bogus)[0] == "InvalidRequestException"
    iot.update_certificate(certificateId=cert_id, newStatus="REVOKED")
    with pytest.raises(ClientError) as again:
        iot.update_certificate(certificateId=cert_id, newStatus="ACTIVE")
    assert _error(again) == ("CertificateStateException", 406)
    status = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]
    assert status == "REVOKED"


def test_delete_refused_while_active_or_attached(aws, iot, jitp_ca, tmp_path):
    cn, _, cert_id = _provisioned(aws, iot, jitp_ca[0], tmp_path)
    arn = iot.describe_certificate(certificateId=cert_id)["certificateDescription"][
        "certificateArn"
    ]
    with pytest.raises(ClientError) as active:
        iot.delete_certificate(certificateId=cert_id)
    assert _error(active) == ("CertificateStateException", 406)
    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    with pytest.raises(ClientError) as thing:
        iot.delete_certificate(certificateId=cert_id)
    assert _error(thing) == ("DeleteConflictException", 409)
    iot.detach_thing_principal(thingName=cn, principal=arn)
    with pytest.raises(ClientError) as policy:
        iot.delete_certificate(certificateId=cert_id)
    assert _error(policy) == ("DeleteConflictException", 409)
    for name in [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]]:
        iot.detach_policy(policyName=name, target=arn)
    iot.delete_certificate(certificateId=cert_id)
    with pytest.raises(ClientError) as gone:
        iot.describe_certificate(certificateId=cert_id)
    assert _error(gone)[0] == "ResourceNotFoundException"


def test_thing_groups_and_principal_listings(aws, iot, jitp_ca, tmp_path):
    cn, _, cert_id = _provisioned(aws, iot, jitp_ca[0], tmp_path)
    arn = iot.describe_certificate(certificateId=cert_id)["certificateDescription"][
        "certificateArn"
    ]
    assert iot.list_thing_principals(thingName=cn)["principals"] == [arn]
    assert iot.list_principal_things(principal=arn)["things"] == [cn]
    group = unique("quarantine")
    with pytest.raises(ClientError) as missing:
        iot.describe_thing_group(thingGroupName=group)
    assert _error(missing)[0] == "ResourceNotFoundException"
    iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=cn)
    names = [g["groupName"] for g in iot.list_thing_groups()["thingGroups"]]
    assert group in names
    assert iot.list_things_in_thing_group(thingGroupName=group)["things"] == [cn]
    in_groups = iot.list_thing_groups_for_thing(thingName=cn)["thingGroups"]
    assert [g["groupName"] for g in in_groups] == [group]
    with pytest.raises(ClientError) as no_thing:
        iot.list_thing_principals(thingName=unique("nothing"))
    assert _error(no_thing)[0] == "ResourceNotFoundException"
