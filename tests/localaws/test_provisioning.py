"""Template evaluation and policy checks, without the network."""

from __future__ import annotations

import json

import pytest

from localaws.provisioning import TemplateError, _Evaluator, policy_allows, resolve_parameters

ARN = "arn:aws:iot:eu-west-1:123456789012"


def _doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_policy_variables_and_wildcards():
    doc = _doc(
        {
            "Effect": "Allow",
            "Action": ["iot:Publish"],
            "Resource": f"{ARN}:topic/things/${{iot:Connection.Thing.ThingName}}/*",
        }
    )
    v = {"iot:Connection.Thing.ThingName": "st-1"}
    assert policy_allows([doc], "iot:Publish", f"{ARN}:topic/things/st-1/a/b", v)
    assert not policy_allows([doc], "iot:Publish", f"{ARN}:topic/things/st-2/a", v)
    assert not policy_allows([doc], "iot:Subscribe", f"{ARN}:topicfilter/things/st-1/a", v)
    # An unresolved variable matches nothing.
    assert not policy_allows([doc], "iot:Publish", f"{ARN}:topic/things//x", {})
    # Brackets are literal, not character classes.
    assert not policy_allows([doc], "iot:Publish", f"{ARN}:topic/things/[st-1]/a", v)


def test_explicit_deny_wins():
    allow = _doc({"Effect": "Allow", "Action": "iot:*", "Resource": "*"})
    deny = _doc({"Effect": "Deny", "Action": "iot:Connect", "Resource": f"{ARN}:client/bad"})
    assert policy_allows([allow, deny], "iot:Connect", f"{ARN}:client/good", {})
    assert not policy_allows([allow, deny], "iot:Connect", f"{ARN}:client/bad", {})


def test_intrinsics():
    template = {
        "Parameters": {"Sn": {"Type": "String"}, "Site": {"Type": "String", "Default": "hq"}},
        "Mappings": {"Sites": {"hq": {"Group": "g-hq"}}},
        "Conditions": {"IsHq": {"Fn::Equals": [{"Ref": "Site"}, "hq"]}},
    }
    ev = _Evaluator(template, resolve_parameters(template, {"Sn": "a-b-c"}))
    assert ev.value({"Fn::Join": ["-", ["x", {"Ref": "Sn"}]]}) == "x-a-b-c"
    assert ev.value({"Fn::Sub": "dev-${Sn}@${Site}"}) == "dev-a-b-c@hq"
    assert ev.value({"Fn::Select": [1, {"Fn::Split": ["-", {"Ref": "Sn"}]}]}) == "b"
    assert ev.value({"Fn::FindInMap": ["Sites", {"Ref": "Site"}, "Group"]}) == "g-hq"
    assert ev.value({"Fn::If": ["IsHq", "yes", "no"]}) == "yes"
    with pytest.raises(TemplateError):
        resolve_parameters(template, {})
