"""The AWS client factory: disabled switch, call log (moto and a hand-made error), redaction."""

from __future__ import annotations

import json

import pytest
from botocore.awsrequest import AWSResponse
from django.utils import timezone

from provisioning.aws import AccessKeyUnavailable, AwsServiceDisabled, aws_client, services
from provisioning.models import AwsApiCall


def call_log_text() -> str:
    return json.dumps(list(AwsApiCall.objects.values()), default=str)


@pytest.mark.django_db
def test_disabled_service_refuses_with_a_sentence(access_key_factory) -> None:  # noqa: ANN001
    key = access_key_factory()
    services.aws_service_update(enabled=False)
    with pytest.raises(AwsServiceDisabled, match=r"AWS service is disabled; enable it"):
        aws_client("sts", access_key=key)
    assert not AwsApiCall.objects.exists()


@pytest.mark.django_db
def test_purged_key_refuses_with_a_sentence(access_key_factory, aws_enabled) -> None:  # noqa: ANN001
    key = access_key_factory(store_for="1h", now=timezone.now() - timezone.timedelta(hours=2))
    services.access_key_purge_due()
    with pytest.raises(AccessKeyUnavailable, match="no longer stored"):
        aws_client("sts", access_key=key)


@pytest.mark.django_db
def test_access_key_test_with_moto_logs_the_call(
    access_key_factory,
    aws_enabled,
    moto_aws,
    secret: str,
    caplog,  # noqa: ANN001
) -> None:
    caplog.set_level("DEBUG")
    key = access_key_factory(secret=secret)
    identity = services.access_key_test(access_key=key)
    assert identity.account == "123456789012"
    assert identity.arn.startswith("arn:aws:")
    call = AwsApiCall.objects.get()
    assert (call.service, call.operation, call.http_status, call.error_code) == (
        "sts",
        "GetCallerIdentity",
        200,
        "",
    )
    assert call.outcome == "ok"
    assert call.request_id
    assert call.access_key_id == key.access_key_id
    assert call.region == "eu-west-1"
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert secret not in call_log_text()
    assert secret not in caplog.text


@pytest.mark.django_db
def test_call_log_redacts_secret_parameters(access_key_factory, aws_enabled, moto_aws) -> None:  # noqa: ANN001
    key = access_key_factory()
    iam = aws_client("iam", access_key=key)
    iam.create_user(UserName="station-admin")
    iam.create_login_profile(UserName="station-admin", Password="Very-Secret-Pass-123!")
    call = AwsApiCall.objects.get(operation="CreateLoginProfile")
    assert call.parameters == {"UserName": "station-admin", "Password": "***"}
    assert "Very-Secret-Pass-123!" not in call_log_text()
    assert AwsApiCall.objects.filter(operation="CreateUser", http_status=200).exists()


ERROR_BODY = b"""<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>
  <Message>The security token included in the request is invalid.</Message></Error>
  <RequestId>4c5d1e0b-err0-4a6b-9d0f-000000000403</RequestId>
</ErrorResponse>"""


@pytest.mark.django_db
def test_error_is_logged_with_status_code_and_request_id(
    access_key_factory,
    aws_enabled,
    secret: str,
    caplog,
    monkeypatch,  # noqa: ANN001
) -> None:
    """A 403 from AWS, answered by a before-send hook so the real parser and hooks run."""
    caplog.set_level("DEBUG")
    key = access_key_factory(secret=secret)

    def reject(request, **_: object) -> AWSResponse:  # noqa: ANN001
        raw = type("Raw", (), {"stream": lambda self, **kw: iter([ERROR_BODY])})()
        return AWSResponse(request.url, 403, {"x-amzn-requestid": "hdr-403"}, raw)

    def client_answering_403(*args: object, **kwargs: object) -> object:
        client = aws_client(*args, **kwargs)  # the real factory, hooks and all
        client.meta.events.register("before-send.sts.GetCallerIdentity", reject)
        return client

    monkeypatch.setattr(services, "aws_client", client_answering_403)
    with pytest.raises(services.AwsError) as info:
        services.access_key_test(access_key=key)
    assert "InvalidClientTokenId" in str(info.value)
    call = AwsApiCall.objects.get()
    assert call.http_status == 403
    assert call.error_code == "InvalidClientTokenId"
    assert call.outcome == "error"
    assert call.request_id == "4c5d1e0b-err0-4a6b-9d0f-000000000403"
    assert "security token" in call.error_message
    assert secret not in call_log_text()
    assert secret not in caplog.text
    assert secret not in str(info.value)


@pytest.mark.django_db
def test_unreachable_aws_is_logged_and_explained(
    access_key_factory,
    aws_enabled,
    settings,
    secret: str,  # noqa: ANN001
) -> None:
    """Connection errors (after retries) reach the log through after-call-error."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{port}"
    settings.AWS_MAX_ATTEMPTS = 1
    key = access_key_factory(secret=secret)
    with pytest.raises(services.AwsError, match="could not be reached"):
        services.access_key_test(access_key=key)
    call = AwsApiCall.objects.get()
    assert call.operation == "GetCallerIdentity"
    assert call.outcome == "error"
    assert call.error_code == "EndpointConnectionError"
    assert call.http_status is None
    assert secret not in call_log_text()
