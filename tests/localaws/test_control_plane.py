"""Control plane: the moto extensions, exercised through boto3 against the running server."""

from __future__ import annotations

import json

import pytest
import requests
from botocore.exceptions import ClientError
from cryptography.x509.oid import NameOID

from .helpers import ROLE_ARN, issue, jitp_template, make_ca, pem, register_ca, unique


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_register_ca_default_mode_and_describe(iot):
    ca = make_ca(unique("ca"))
    body = jitp_template()
    ca_id = register_ca(iot, ca, template_body=body)
    desc = iot.describe_ca_certificate(certificateId=ca_id)
    assert desc["certificateDescription"]["status"] == "ACTIVE"
    assert desc["certificateDescription"]["autoRegistrationStatus"] == "ENABLE"
    assert desc["certificateDescription"]["certificateMode"] == "DEFAULT"
    assert desc["certificateDescription"]["certificateArn"].endswith(f":cacert/{ca_id}")
    assert desc["registrationConfig"] == {"templateBody": body, "roleArn": ROLE_ARN}
    listed = {c["certificateId"]: c["status"] for c in iot.list_ca_certificates()["certificates"]}
    assert listed[ca_id] == "ACTIVE"


def test_registration_code_is_stable(iot):
    a = iot.get_registration_code()["registrationCode"]
    assert a == iot.get_registration_code()["registrationCode"]


def test_verification_certificate_errors(iot):
    ca = make_ca(unique("ca"))
    with pytest.raises(ClientError) as exc:
        iot.register_ca_certificate(caCertificate=ca.pem, setAsActive=True)
    assert _code(exc) == "InvalidRequestException"

    wrong_cn, _ = issue(ca, {NameOID.COMMON_NAME: "not-the-code"})
    with pytest.raises(ClientError) as exc:
        iot.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=pem(wrong_cn))
    assert _code(exc) == "CertificateValidationException"

    other = make_ca(unique("other"))
    code = iot.get_registration_code()["registrationCode"]
    foreign, _ = issue(other, {NameOID.COMMON_NAME: code})
    with pytest.raises(ClientError) as exc:
        iot.register_ca_certificate(caCertificate=ca.pem, verificationCertificate=pem(foreign))
    assert _code(exc) == "CertificateValidationException"


def test_not_a_ca_and_garbage_refused(iot):
    leaf = make_ca(unique("leaf"), is_ca=False)
    with pytest.raises(ClientError) as exc:
        iot.register_ca_certificate(caCertificate=leaf.pem, certificateMode="SNI_ONLY")
    assert _code(exc) == "CertificateValidationException"
    with pytest.raises(ClientError) as exc:
        iot.register_ca_certificate(caCertificate="not a pem", certificateMode="SNI_ONLY")
    assert _code(exc) == "CertificateValidationException"


def test_duplicate_ca_refused(iot):
    ca = make_ca(unique("ca"))
    ca_id = register_ca(iot, ca)
    with pytest.raises(ClientError) as exc:
        register_ca(iot, ca)
    assert _code(exc) == "ResourceAlreadyExistsException"
    assert exc.value.response["resourceId"] == ca_id


def test_sni_only_needs_no_verification_certificate(iot):
    ca = make_ca(unique("ca"))
    ca_id = register_ca(iot, ca, sni_only=True, template_body=jitp_template())
    assert (
        iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"][
            "certificateMode"
        ]
        == "SNI_ONLY"
    )


def test_update_ca_certificate(iot):
    ca = make_ca(unique("ca"))
    ca_id = register_ca(iot, ca, auto=False)
    assert (
        iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"][
            "autoRegistrationStatus"
        ]
        == "DISABLE"
    )
    body = jitp_template()
    iot.update_ca_certificate(
        certificateId=ca_id,
        newStatus="INACTIVE",
        newAutoRegistrationStatus="ENABLE",
        registrationConfig={"templateBody": body, "roleArn": ROLE_ARN},
    )
    desc = iot.describe_ca_certificate(certificateId=ca_id)
    assert desc["certificateDescription"]["status"] == "INACTIVE"
    assert desc["certificateDescription"]["autoRegistrationStatus"] == "ENABLE"
    assert desc["registrationConfig"]["templateBody"] == body
    with pytest.raises(ClientError) as exc:
        iot.update_ca_certificate(certificateId=ca_id, newStatus="BOGUS")
    assert _code(exc) == "InvalidRequestException"


def test_registration_config_validation(iot):
    ca = make_ca(unique("ca"))
    with pytest.raises(ClientError) as exc:
        register_ca(iot, ca, template_name=unique("missing"))
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        register_ca(iot, ca, template_body="{not json")
    assert _code(exc) == "InvalidRequestException"


def test_provisioning_templates_crud(iot):
    name = unique("tpl")
    body = jitp_template()
    created = iot.create_provisioning_template(
        templateName=name,
        templateBody=body,
        provisioningRoleArn=ROLE_ARN,
        enabled=True,
        type="JITP",
        description="first",
    )
    assert created["defaultVersionId"] == 1
    assert created["templateArn"].endswith(f"provisioningtemplate/{name}")
    with pytest.raises(ClientError) as exc:
        iot.create_provisioning_template(
            templateName=name, templateBody=body, provisioningRoleArn=ROLE_ARN
        )
    assert _code(exc) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as exc:
        iot.create_provisioning_template(
            templateName=unique("x"), templateBody=body, provisioningRoleArn=ROLE_ARN, type="NOPE"
        )
    assert _code(exc) == "InvalidRequestException"

    desc = iot.describe_provisioning_template(templateName=name)
    assert (desc["type"], desc["enabled"], desc["templateBody"]) == ("JITP", True, body)

    body2 = json.dumps({**json.loads(body), "DeviceConfiguration": {"v": "2"}})
    v2 = iot.create_provisioning_template_version(
        templateName=name, templateBody=body2, setAsDefault=True
    )
    assert v2["versionId"] == 2
    assert v2["isDefaultVersion"]
    assert iot.describe_provisioning_template(templateName=name)["templateBody"] == body2
    iot.update_provisioning_template(templateName=name, defaultVersionId=1, enabled=False)
    desc = iot.describe_provisioning_template(templateName=name)
    assert (desc["defaultVersionId"], desc["enabled"]) == (1, False)
    versions = iot.list_provisioning_template_versions(templateName=name)["versions"]
    assert [v["versionId"] for v in versions] == [1, 2]
    assert name in [t["templateName"] for t in iot.list_provisioning_templates()["templates"]]

    iot.delete_provisioning_template(templateName=name)
    with pytest.raises(ClientError) as exc:
        iot.describe_provisioning_template(templateName=name)
    assert _code(exc) == "ResourceNotFoundException"


def test_named_template_registration_and_list_filter(iot):
    name = unique("tpl")
    iot.create_provisioning_template(
        templateName=name,
        templateBody=jitp_template(),
        provisioningRoleArn=ROLE_ARN,
        enabled=True,
        type="JITP",
    )
    ca_id = register_ca(iot, make_ca(unique("ca")), template_name=name)
    assert [
        c["certificateId"] for c in iot.list_ca_certificates(templateName=name)["certificates"]
    ] == [ca_id]
    with pytest.raises(ClientError) as exc:
        iot.delete_provisioning_template(templateName=name)
    assert _code(exc) == "DeleteConflictException"


def test_describe_endpoint_stable(iot, aws):
    ats = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert ats == iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert ats == aws.data_endpoint
    assert ats.endswith("-ats.iot.eu-west-1.amazonaws.com")


def test_create_keys_and_certificate_signed_by_amazon_ca(iot, aws):
    from cryptography import x509

    out = iot.create_keys_and_certificate(setAsActive=True)
    cert = x509.load_pem_x509_certificate(out["certificatePem"].encode())
    amazon = x509.load_pem_x509_certificate(aws.amazon_ca_path.read_bytes())
    cert.verify_directly_issued_by(amazon)


def test_moto_api_routes_served(aws):
    assert requests.get(f"{aws.endpoint_url}/moto-api/data.json", timeout=10).status_code == 200


def test_create_jitp_role_is_idempotent(aws):
    name = unique("role")
    arn = aws.create_jitp_role(name)
    assert arn == aws.create_jitp_role(name)
    iam = aws.boto3_client("iam")
    assert iam.get_role(RoleName=name)["Role"]["Arn"] == arn
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    inline = iam.list_role_policies(RoleName=name)["PolicyNames"]
    managed = "arn:aws:iam::aws:policy/service-role/AWSIoTThingsRegistration"
    try:
        iam.get_policy(PolicyArn=managed)
    except iam.exceptions.NoSuchEntityException:
        # moto without AWS's managed policies: the stand-in puts an inline copy on the role.
        assert attached == []
        assert inline == ["AWSIoTThingsRegistration"]
        document = iam.get_role_policy(RoleName=name, PolicyName="AWSIoTThingsRegistration")[
            "PolicyDocument"
        ]
        assert {"iot:RegisterThing", "iot:CreateThing", "iot:AttachPolicy"} <= set(
            document["Statement"][0]["Action"]
        )
    else:
        assert attached == [{"PolicyName": "AWSIoTThingsRegistration", "PolicyArn": managed}]
        assert inline == []
