"""Fixtures for the provisioning tests: access keys, an enabled AWS service, moto, JITP."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Iterator
from datetime import timedelta

import boto3
import pytest
import requests
from django.utils import timezone

ALPHABET = string.ascii_letters + string.digits + "/+"


def make_secret() -> str:
    """A random, AWS-shaped secret (40 chars), unique per test so a leak search is exact."""
    return "".join(secrets.choice(ALPHABET) for _ in range(40))


def make_key_id(prefix: str = "AKIA") -> str:
    return prefix + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)
    )


@pytest.fixture
def secret() -> str:
    return make_secret()


@pytest.fixture
def access_key_factory(db: None) -> Callable[..., object]:
    from provisioning.aws import services

    def create(*, secret: str | None = None, store_for: str = "1d", **kw: object) -> object:
        return services.access_key_create(
            access_key_id=str(kw.pop("access_key_id", make_key_id())),
            secret=secret or make_secret(),
            store_for=store_for,
            **kw,  # type: ignore[arg-type]
        )

    return create


@pytest.fixture
def aws_enabled(db: None) -> object:
    from provisioning.aws.services import aws_service_update

    return aws_service_update(enabled=True, region="eu-west-1")


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS; no request leaves the machine."""
    from django.conf import settings
    from moto import mock_aws

    monkeypatch.setattr(settings, "AWS_ENDPOINT_URL", None)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


ACCESS_KEY_ID = "AKIAJITPTEST00000001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYJITPSECRET"  # 40 characters, shaped like a real one
CA_PASSWORD = "ca-password-123"
TRUST_IOT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "iot.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture
def moto_server(settings) -> Iterator[str]:  # noqa: ANN001
    """A moto server on a free port; every portal boto3 client points at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's backends are process-global: start every test from an empty account.
    requests.post(f"{url}/moto-api/reset", timeout=10)
    settings.AWS_ENDPOINT_URL = url
    settings.AWS_MAX_ATTEMPTS = 3
    yield url
    requests.post(f"{url}/moto-api/reset", timeout=10)
    server.stop()


@pytest.fixture
def access_key(aws_enabled):  # noqa: ANN001, ANN201
    from provisioning.models import AccessKey

    return AccessKey.objects.create(
        access_key_id=ACCESS_KEY_ID,
        secret=SECRET,
        store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )


def aws(service: str, endpoint: str):  # noqa: ANN201
    """A separate boto3 client (not the portal's) to look at the moto server."""
    return boto3.client(
        service,
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIAOTHERCLIENT00001",
        aws_secret_access_key="x" * 40,
    )


@pytest.fixture
def jitp_role(moto_server: str) -> str:
    iam = aws("iam", moto_server)
    role = iam.create_role(RoleName="JITPRole", AssumeRolePolicyDocument=json.dumps(TRUST_IOT))
    # moto loads AWS managed policies only with MOTO_IAM_LOAD_MANAGED_POLICIES (slow): a
    # customer policy of the same name stands in for it.
    policy = iam.create_policy(
        PolicyName="AWSIoTThingsRegistration",
        Path="/service-role/",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["iot:CreateThing", "iot:AttachPolicy"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    iam.attach_role_policy(RoleName="JITPRole", PolicyArn=policy["Policy"]["Arn"])
    return role["Role"]["Arn"]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's real retry logic, minus its back-off sleeps."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)


def moto_ca_certificates(endpoint: str) -> list[dict]:
    """Every CA certificate the moto server holds (moto has no list_ca_certificates)."""
    data = requests.get(f"{endpoint}/moto-api/data.json", timeout=10).json()
    return data.get("iot", {}).get("FakeCaCertificate", [])


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self.body


def aws_response(request, status: int, body: dict | str, headers: dict | None = None):  # noqa: ANN001, ANN201
    """An HTTP answer botocore parses exactly like one from AWS (before-send hooks)."""
    from botocore.awsrequest import AWSResponse

    data = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    all_headers = {"x-amzn-RequestId": "test-request-id", "Content-Type": "application/json"}
    all_headers.update(headers or {})
    return AWSResponse(request.url, status, all_headers, _Raw(data))


def iot_error(request, code: str, message: str, status: int = 400, **extra: str):  # noqa: ANN001, ANN201
    return aws_response(
        request,
        status,
        {"message": message, **extra},
        {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"},
    )


def iam_error(request, code: str, message: str, status: int = 403):  # noqa: ANN001, ANN201
    body = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>test-request-id</RequestId></ErrorResponse>"
    )
    return aws_response(request, status, body, {"Content-Type": "text/xml"})


class AwsHooks:
    """Registers ``before-send`` handlers on every client the JITP service creates, so that
    chosen operations answer like AWS would (errors, throttling) and go through botocore's
    real parsing and retry logic; the rest reach the moto server."""

    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}
        self.requests: dict[str, list] = {}

    def on(self, service_operation: str, handler) -> None:  # noqa: ANN001
        self.handlers[service_operation] = handler

    def sent(self, service_operation: str) -> list:
        return self.requests.get(service_operation, [])

    def attach(self, client) -> None:  # noqa: ANN001
        service = client.meta.service_model.service_name
        for key, handler in self.handlers.items():
            svc, _, operation = key.partition(".")
            if svc != service:
                continue

            def hook(request, _key=key, _handler=handler, **kwargs):  # noqa: ANN001, ANN003, ANN202
                self.requests.setdefault(_key, []).append(request)
                return _handler(request)

            client.meta.events.register(f"before-send.{svc}.{operation}", hook)


@pytest.fixture
def aws_hooks(monkeypatch: pytest.MonkeyPatch, fast_retries: None) -> AwsHooks:
    import provisioning.jitp.steps as jitp

    hooks = AwsHooks()
    original = jitp.aws_client

    def client(service: str, **kwargs: object):  # noqa: ANN202
        made = original(service, **kwargs)
        hooks.attach(made)
        return made

    monkeypatch.setattr(jitp, "aws_client", client)
    return hooks


def jitp_configure(access_key, role_arn: str, **fields: object):  # noqa: ANN001, ANN201
    from provisioning.jitp import jitp_settings_update

    values: dict[str, object] = {
        "access_key": access_key,
        "role_arn": role_arn,
        "ca_source": "generate",
        "ca_alias": "fleet-ca",
        "ca_dn": "CN=Fleet CA,O=ACME,C=DE",
        "ca_password": CA_PASSWORD,
    }
    values.update(fields)
    return jitp_settings_update(**values)


def jitp_run():  # noqa: ANN201
    """Run the JITP job in this process, as `setup_jitp` does; returns the finished job."""
    from provisioning.jitp import jitp_setup_run
    from provisioning.jobs import job_create
    from provisioning.models import Job

    job = job_create(kind=Job.Kind.JITP_SETUP, title="Set up JITP (test)", total=6)
    return jitp_setup_run(job=job)


def job_text(job) -> str:  # noqa: ANN001
    return "\n".join(line.message for line in job.log_lines.order_by("id"))


from .connection_fixtures import (  # noqa: E402, F401
    _fast_password_hashing,
    api,
    cert_pair,
    payload,
    staff_token,
)
