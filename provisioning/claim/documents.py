"""The documents of claim provisioning: the FLEET_PROVISIONING template, the least-privilege
device policy and the claim certificate's policy (JSON, as AWS IoT takes them)."""

from __future__ import annotations

import json
from typing import Any

from ..jitp.documents import certificate_resource
from .models import ClaimSetup


def claim_template_body(setup: ClaimSetup) -> str:
    """The FLEET_PROVISIONING template (no pre-provisioning hook)."""
    thing: dict[str, Any] = {
        "ThingName": {"Fn::Join": ["", [setup.thing_name_prefix, {"Ref": "SerialNumber"}]]},
        "AttributePayload": {"serialNumber": {"Ref": "SerialNumber"}},
    }
    if setup.thing_type:
        thing["ThingTypeName"] = setup.thing_type
    body = {
        "Parameters": {
            "SerialNumber": {"Type": "String"},
            "AWS::IoT::Certificate::Id": {"Type": "String"},
        },
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "Properties": thing,
                "OverrideSettings": {
                    "AttributePayload": "MERGE",
                    "ThingTypeName": "REPLACE",
                    "ThingGroups": "DO_NOTHING",
                },
            },
            "certificate": certificate_resource(),
            "policy": {
                "Type": "AWS::IoT::Policy",
                "Properties": {"PolicyName": setup.device_policy_name},
            },
        },
        "DeviceConfiguration": {},
    }
    return json.dumps(body, sort_keys=True)


def device_policy_document(*, region: str, account: str) -> str:
    """Least privilege: client id = thing name, topics only under things/<thing>/…"""
    arn = f"arn:aws:iot:{region}:{account}"
    thing = "${iot:Connection.Thing.ThingName}"
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{thing}",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": [f"{arn}:topic/things/{thing}/*", f"{arn}:topic/$aws/things/{thing}/*"],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [
                    f"{arn}:topicfilter/things/{thing}/*",
                    f"{arn}:topicfilter/$aws/things/{thing}/*",
                ],
            },
        ],
    }
    return json.dumps(doc, sort_keys=True)


def claim_policy_document(*, region: str, account: str, template_name: str) -> str:
    """The claim certificate may only call the two fleet-provisioning MQTT APIs."""
    arn = f"arn:aws:iot:{region}:{account}"
    topics = [
        "$aws/certificates/create-from-csr/*",
        f"$aws/provisioning-templates/{template_name}/provision/*",
    ]
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/*"},
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": [f"{arn}:topic/{t}" for t in topics],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{arn}:topicfilter/{t}" for t in topics],
            },
        ],
    }
    return json.dumps(doc, sort_keys=True)


# ---------------------------------------------------------------- rows
