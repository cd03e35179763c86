"""Provisioning-template evaluation (JITP and fleet provisioning) and iot:Connect checks.

The template language is AWS IoT's subset of CloudFormation: Parameters (with Default),
Mappings, Conditions, Resources of type AWS::IoT::Thing / Certificate / Policy, the
intrinsics Ref, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::FindInMap, Fn::If,
Fn::Equals, Fn::Not, Fn::And, Fn::Or, and the result's DeviceConfiguration. Resources are
written to moto's IoT backend, so boto3 sees what a device's first connection created.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from moto.core.exceptions import JsonRESTError
from moto.iot.models import FakeCertificate, IoTBackend

CERT_PARAMS = {
    "AWS::IoT::Certificate::CommonName": NameOID.COMMON_NAME,
    "AWS::IoT::Certificate::Country": NameOID.COUNTRY_NAME,
    "AWS::IoT::Certificate::Organization": NameOID.ORGANIZATION_NAME,
    "AWS::IoT::Certificate::OrganizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "AWS::IoT::Certificate::DistinguishedNameQualifier": NameOID.DN_QUALIFIER,
    "AWS::IoT::Certificate::StateName": NameOID.STATE_OR_PROVINCE_NAME,
    "AWS::IoT::Certificate::SerialNumber": NameOID.SERIAL_NUMBER,
}


class TemplateError(Exception):
    """The template cannot be applied; the message is safe to show to the device/operator."""


def certificate_parameters(cert: x509.Certificate, certificate_id: str) -> dict[str, str]:
    """The AWS::IoT::Certificate::* parameters a JITP template may reference."""
    params = {"AWS::IoT::Certificate::Id": certificate_id}
    for pname, oid in CERT_PARAMS.items():
        attrs = cert.subject.get_attributes_for_oid(oid)
        if attrs:
            params[pname] = str(attrs[0].value)
    return params


class _Evaluator:
    def __init__(self, template: dict[str, Any], params: dict[str, Any]) -> None:
        self.template = template
        self.params = params
        self.mappings = template.get("Mappings", {}) or {}
        self.conditions: dict[str, bool] = {}
        for cname, expr in (template.get("Conditions") or {}).items():
            self.conditions[cname] = bool(self.value(expr))

    def value(self, node: Any) -> Any:  # noqa: C901 - one dispatch over intrinsics
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg not in self.params:
                    raise TemplateError(f"Parameter {arg} has no value.")
                return self.params[arg]
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(self.value(i)) for i in self.value(items))
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                env = {**self.params, **{k: self.value(v) for k, v in extra.items()}}

                def repl(m: re.Match[str]) -> str:
                    name = m.group(1)
                    if name not in env:
                        raise TemplateError(f"Parameter {name} has no value.")
                    return str(env[name])

                return re.sub(r"\$\{([^}!]+)\}", repl, text)
            if key == "Fn::Select":
                idx, items = arg
                return self.value(items)[int(self.value(idx))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.value(text)).split(sep)
            if key == "Fn::FindInMap":
                mname, k1, k2 = (self.value(a) for a in arg)
                try:
                    return self.mappings[mname][k1][k2]
                except KeyError as exc:
                    raise TemplateError(f"Fn::FindInMap found no {mname}/{k1}/{k2}.") from exc
            if key == "Fn::If":
                cname, yes, no = arg
                return self.value(yes if self.conditions.get(cname) else no)
            if key == "Fn::Equals":
                a, b = arg
                return self.value(a) == self.value(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(a) for a in arg)
            if key == "Fn::Or":
                return any(self.value(a) for a in arg)
            if key == "Condition":
                return self.conditions.get(arg, False)
        return {k: self.value(v) for k, v in node.items()}


def resolve_parameters(template: dict[str, Any], supplied: dict[str, Any]) -> dict[str, Any]:
    """Declared parameters must all have a value (supplied or Default); AWS fails otherwise."""
    params: dict[str, Any] = {}
    for name, decl in (template.get("Parameters") or {}).items():
        if name in supplied:
            params[name] = supplied[name]
        elif isinstance(decl, dict) and "Default" in decl:
            params[name] = decl["Default"]
        else:
            raise TemplateError(f"The template parameter {name} has no value.")
    for name, val in supplied.items():
        params.setdefault(name, val)
    return params


def apply_template(
    backend: IoTBackend,
    body: str,
    supplied: dict[str, Any],
    certificate: FakeCertificate,
) -> dict[str, Any]:
    """Create what the template describes for `certificate`; returns thingName and config.

    Raises TemplateError before writing anything when a parameter is missing.
    """
    try:
        template = json.loads(body)
    except ValueError as exc:
        raise TemplateError("The template body is not valid JSON.") from exc
    params = resolve_parameters(template, supplied)
    ev = _Evaluator(template, params)
    resources = []
    for logical, res in (template.get("Resources") or {}).items():
        if "Condition" in res and not ev.conditions.get(res["Condition"], False):
            continue
        resources.append((logical, res.get("Type"), ev.value(res.get("Properties") or {})))
    config = ev.value(template.get("DeviceConfiguration") or {})

    thing_name = None
    cert_status = "ACTIVE"
    for _, rtype, props in resources:
        if rtype == "AWS::IoT::Thing":
            thing_name = props.get("ThingName")
            if not thing_name:
                raise TemplateError("The Thing resource has no ThingName.")
        elif rtype == "AWS::IoT::Certificate":
            cert_status = str(props.get("Status", "ACTIVE")).upper()
        elif rtype == "AWS::IoT::Policy":
            if not props.get("PolicyName") and not props.get("PolicyDocument"):
                raise TemplateError("The Policy resource needs PolicyName or PolicyDocument.")
            if props.get("PolicyName") and not props.get("PolicyDocument"):
                if props["PolicyName"] not in backend.policies:
                    raise TemplateError(f"The policy {props['PolicyName']} does not exist.")
        elif rtype is not None:
            raise TemplateError(f"Unsupported resource type {rtype}.")

    for _, rtype, props in resources:
        if rtype == "AWS::IoT::Thing":
            _ensure_thing(backend, props)
            backend.attach_thing_principal(str(thing_name), certificate.arn)
        elif rtype == "AWS::IoT::Policy":
            name = _ensure_policy(backend, props)
            backend.attach_policy(name, certificate.arn)
    certificate.status = cert_status
    return {"thingName": thing_name, "deviceConfiguration": config}


def _ensure_thing(backend: IoTBackend, props: dict[str, Any]) -> None:
    name = props["ThingName"]
    attrs = {k: str(v) for k, v in (props.get("AttributePayload") or {}).items()}
    ttype = props.get("ThingTypeName")
    if ttype and ttype not in {t.thing_type_name for t in backend.thing_types.values()}:
        raise TemplateError(f"The thing type {ttype} does not exist.")
    if name not in {t.thing_name for t in backend.things.values()}:
        backend.create_thing(name, ttype or "", {"attributes": attrs} if attrs else None)
    elif attrs:
        backend.update_thing(
            thing_name=name,
            thing_type_name=ttype or "",
            attribute_payload={"attributes": attrs, "merge": True},
            remove_thing_type=False,
        )
    for group in props.get("ThingGroups") or []:
        try:
            backend.add_thing_to_thing_group(group, None, name, None)
        except JsonRESTError as exc:
            raise TemplateError(f"The thing group {group} cannot be used: {exc.message}") from exc
    bg = props.get("BillingGroup")
    if bg:
        try:
            backend.add_thing_to_billing_group(bg, None, name, None)
        except JsonRESTError as exc:
            raise TemplateError(f"The billing group {bg} cannot be used: {exc.message}") from exc


def _ensure_policy(backend: IoTBackend, props: dict[str, Any]) -> str:
    doc = props.get("PolicyDocument")
    if not doc:
        return str(props["PolicyName"])
    doc_text = doc if isinstance(doc, str) else json.dumps(doc)
    name = props.get("PolicyName") or ("JITP-" + hashlib.sha256(doc_text.encode()).hexdigest()[:32])
    if name not in backend.policies:
        backend.create_policy(name, doc_text)  # type: ignore[arg-type]  # moto stores the text
    return str(name)


# ------------------------------------------------------------------ policy evaluation


def _substitute(resource: str, variables: dict[str, str]) -> str | None:
    missing = False

    def repl(m: re.Match[str]) -> str:
        nonlocal missing
        val = variables.get(m.group(1))
        if val is None:
            missing = True
            return ""
        return val

    out = re.sub(r"\$\{([^}]+)\}", repl, resource)
    return None if missing else out


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM wildcard match: `*` any run of characters (including `/`), `?` one character."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, 0 if case else re.IGNORECASE) is not None


def _listify(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def policy_allows(
    documents: list[str], action: str, resource_arn: str, variables: dict[str, str]
) -> bool:
    """IAM-style evaluation: an explicit Deny wins, otherwise some Allow must match.

    Conditions are not evaluated (a statement with a Condition is treated as matching).
    """
    allowed = False
    for text in documents:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        for st in _listify(doc.get("Statement", [])):
            if not isinstance(st, dict):
                continue
            actions = [str(a) for a in _listify(st.get("Action", []))]
            if not any(_glob(a, action, case=False) for a in actions):
                continue
            hit = False
            for res in _listify(st.get("Resource", [])):
                pattern = _substitute(str(res), variables)
                if pattern is not None and _glob(pattern, resource_arn):
                    hit = True
                    break
            if not hit:
                continue
            if st.get("Effect") == "Deny":
                return False
            if st.get("Effect") == "Allow":
                allowed = True
    return allowed


def principal_policy_documents(backend: IoTBackend, principal_arn: str) -> list[str]:
    """Default-version documents of every policy attached to a principal."""
    docs = []
    for policy in backend.list_principal_policies(principal_arn):
        doc = policy.document
        for version in getattr(policy, "versions", []):
            if version.is_default:
                doc = version.document
        docs.append(doc if isinstance(doc, str) else json.dumps(doc))
    return docs
