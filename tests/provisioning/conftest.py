"""Fixtures for the JITP tests: a moto server, an enabled AWS service, an access key, a role."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest
from django.utils import timezone

ACCESS_KEY_ID = "AKIAJITPTEST00000001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYJITPSECRET"  # 40 characters, shaped like a real one
CA_PASSWORD = "ca-password-123"
TRUST_IOT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


@pytest.fixture
def moto_server(settings) -> Iterator[str]:  # noqa: ANN001
    """A moto server on a free port; every portal boto3 client points at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    settings.AWS_ENDPOINT_URL = url
    settings.AWS_MAX_ATTEMPTS = 3
    yield url
    server.stop()


@pytest.fixture
def aws_enabled(db):  # noqa: ANN001, ANN201
    from provisioning.aws import aws_service_get

    service = aws_service_get()
    service.enabled = True
    service.region = "eu-west-1"
    service.save()
    return service


@pytest.fixture
def access_key(aws_enabled):  # noqa: ANN001, ANN201
    from provisioning.models import AccessKey

    return AccessKey.objects.create(
        access_key_id=ACCESS_KEY_ID, secret=SECRET, store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )


def aws(service: str, endpoint: str):  # noqa: ANN201
    """A separate boto3 client (not the portal's) to look at the moto server."""
    return boto3.client(service, region_name="eu-west-1", endpoint_url=endpoint,
                        aws_access_key_id="AKIAOTHERCLIENT00001",
                        aws_secret_access_key="x" * 40)


@pytest.fixture
def jitp_role(moto_server: str) -> str:
    iam = aws("iam", moto_server)
    role = iam.create_role(RoleName="JITPRole", AssumeRolePolicyDocument=json.dumps(TRUST_IOT))
    # moto loads AWS managed policies only with MOTO_IAM_LOAD_MANAGED_POLICIES (slow): a
    # customer policy of the same name stands in for it.
    policy = iam.create_policy(
        PolicyName="AWSIoTThingsRegistration", Path="/service-role/",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iot:CreateThing", "iot:AttachPolicy"],
             "Resource": "*"}]}),
    )
    iam.attach_role_policy(RoleName="JITPRole", PolicyArn=policy["Policy"]["Arn"])
    return role["Role"]["Arn"]
