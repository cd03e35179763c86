"""The AWS action outbox against a moto server: rows first, carried out idempotently, paced,
with retries on throttling, and every call in the call log linked to its row."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from devices.services import station_create
from provisioning.jitp import jitp_settings_get
from provisioning.lifecycle import (
    AwsAction,
    Change,
    aws_actions_enqueue,
    aws_actions_retry,
    aws_actions_run,
)
from provisioning.models import AwsApiCall
from signing.models import IssuedCertificate
from signing.services import (
    ca_generate,
    onboarding_request_submit,
    onboarding_requests_approve,
    onboarding_requests_sign,
    signing_profile_create,
)
from tests.provisioning.conftest import aws, iot_error
from tests.signing.conftest import make_ec_csr

Kind = AwsAction.Kind
CA_PASSWORD = "ca-password-123"


@pytest.fixture
def issued(db) -> IssuedCertificate:  # noqa: ANN001
    ca = ca_generate(alias="outbox-ca", dn="CN=Outbox CA,O=Example,C=DE", password=CA_PASSWORD)
    signing_profile_create(
        name="default", ca=ca, ca_password=CA_PASSWORD, country="DE", is_default=True
    )
    station, _ = station_create(name="st-outbox")
    request, _ = onboarding_request_submit(station=station, device_name="dev", csr=make_ec_csr())
    onboarding_requests_approve(ids=[request.pk], actor_label="test")
    assert onboarding_requests_sign(ids=[request.pk]).issued == 1
    return IssuedCertificate.objects.get(request=request)


@pytest.fixture
def der_certificate_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto computes AWS's certificate id from the DER (as AWS does) only when told to."""
    from moto.settings import default_user_config

    monkeypatch.setitem(default_user_config, "iot", {"use_valid_cert": True})


@pytest.fixture
def in_aws(moto_server: str, der_certificate_ids, access_key, issued: IssuedCertificate):  # noqa: ANN001, ANN201
    """The certificate registered in AWS, ACTIVE, attached to its thing and a policy (what
    JITP does on the first connection), and the JITP settings holding the access key."""
    row = jitp_settings_get()
    row.access_key = access_key
    row.region = "eu-west-1"
    row.save()
    iot = aws("iot", moto_server)
    registered = iot.register_certificate_without_ca(
        certificatePem=issued.certificate_pem, status="ACTIVE"
    )
    assert registered["certificateId"] == issued.aws_certificate_id
    arn = registered["certificateArn"]
    iot.create_thing(thingName=issued.common_name)
    iot.attach_thing_principal(thingName=issued.common_name, principal=arn)
    iot.create_policy(
        policyName="fleet-policy",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
            }
        ),
    )
    iot.attach_policy(policyName="fleet-policy", target=arn)
    return iot, arn


def _status(iot, certificate_id: str) -> str:  # noqa: ANN001
    return iot.describe_certificate(certificateId=certificate_id)["certificateDescription"][
        "status"
    ]


def test_the_aws_certificate_id_is_the_sha256_of_the_der(issued: IssuedCertificate) -> None:
    assert issued.aws_certificate_id == issued.fingerprint_sha256.replace(":", "").lower()
    assert len(issued.aws_certificate_id) == 64


def test_enqueueing_the_same_change_twice_records_one_row(issued: IssuedCertificate) -> None:
    first = aws_actions_enqueue(changes=[Change(Kind.REVOKE, certificate=issued)])
    second = aws_actions_enqueue(changes=[Change(Kind.REVOKE, certificate=issued)])
    assert [r.pk for r in first] == [r.pk for r in second]
    assert AwsAction.objects.count() == 1
    assert first[0].aws_certificate_id == issued.aws_certificate_id


def test_confirm_records_the_twin_as_aws_shows_it(in_aws, issued: IssuedCertificate) -> None:  # noqa: ANN001
    aws_actions_enqueue(changes=[Change(Kind.CONFIRM, certificate=issued)])
    result = aws_actions_run()
    assert result.done == 1
    issued.refresh_from_db()
    assert issued.aws_status == "ACTIVE"
    assert issued.aws_thing == issued.common_name
    assert issued.aws_policies == ["fleet-policy"]
    assert issued.aws_observed_at is not None


def test_retirement_steps_reach_aws_in_order_and_are_idempotent(in_aws, issued) -> None:  # noqa: ANN001
    iot, arn = in_aws
    changes = [
        Change(Kind.DEACTIVATE, certificate=issued),
        Change(Kind.DETACH_THING, certificate=issued),
        Change(Kind.DETACH_POLICIES, certificate=issued),
        Change(Kind.DELETE, certificate=issued),
    ]
    aws_actions_enqueue(changes=changes, reason="superseded")
    result = aws_actions_run()
    assert (result.done, result.failed) == (4, 0)
    assert not iot.list_certificates()["certificates"]
    # Carried out again (a lost acknowledgement, a crashed worker): nothing breaks.
    AwsAction.objects.update(status=AwsAction.Status.PENDING)
    assert aws_actions_run().done == 4


def test_revoke_sets_revoked_in_aws(in_aws, issued) -> None:  # noqa: ANN001
    iot, _ = in_aws
    aws_actions_enqueue(changes=[Change(Kind.REVOKE, certificate=issued)], reason="keyCompromise")
    assert aws_actions_run().done == 1
    assert _status(iot, issued.aws_certificate_id) == "REVOKED"
    row = AwsAction.objects.get()
    assert row.status == AwsAction.Status.DONE
    assert row.attempts == 1
    calls = AwsApiCall.objects.filter(action=row).values_list("operation", flat=True)
    assert "UpdateCertificate" in calls
    assert "DescribeCertificate" in calls


def test_deleting_an_active_certificate_is_refused_by_aws_and_retried(in_aws, issued) -> None:  # noqa: ANN001
    iot, _ = in_aws
    aws_actions_enqueue(changes=[Change(Kind.DELETE, certificate=issued)])
    result = aws_actions_run()
    row = AwsAction.objects.get()
    assert result.done == 0
    assert row.status in (AwsAction.Status.PENDING, AwsAction.Status.FAILED)
    assert row.last_error.startswith("AWS answered")
    assert iot.describe_certificate(certificateId=issued.aws_certificate_id)


def test_throttling_is_retried_with_backoff_and_completes(
    in_aws,
    issued,
    monkeypatch,
    fast_retries,  # noqa: ANN001
) -> None:
    iot, _ = in_aws
    throttled = {"left": 7}  # more than botocore's own attempts: the outbox must retry too
    import provisioning.lifecycle.runner as runner

    original = runner.aws_client

    def client(service: str, **kwargs: object):  # noqa: ANN202
        made = original(service, **kwargs)

        def hook(request, **_: object):  # noqa: ANN001, ANN202
            if throttled["left"] > 0:
                throttled["left"] -= 1
                return iot_error(request, "ThrottlingException", "Rate exceeded", status=429)
            return None

        made.meta.events.register("before-send.iot.UpdateCertificate", hook)
        return made

    monkeypatch.setattr(runner, "aws_client", client)
    aws_actions_enqueue(changes=[Change(Kind.DEACTIVATE, certificate=issued)])
    first = aws_actions_run()
    row = AwsAction.objects.get()
    assert first.retried == 1
    assert row.status == AwsAction.Status.PENDING
    assert row.not_before > timezone.now()
    assert "ThrottlingException" in row.last_error
    AwsAction.objects.update(not_before=timezone.now())  # the backoff has passed
    assert aws_actions_run().done == 1
    assert _status(iot, issued.aws_certificate_id) == "INACTIVE"
    throttles = AwsApiCall.objects.filter(action=row, operation="UpdateCertificate")
    assert sum(c.retry_attempts for c in throttles) + throttles.count() >= 8


def test_a_running_action_left_by_a_dead_worker_is_taken_up_again(in_aws, issued, settings) -> None:  # noqa: ANN001
    iot, _ = in_aws
    aws_actions_enqueue(changes=[Change(Kind.REVOKE, certificate=issued)])
    long_ago = timezone.now() - timezone.timedelta(seconds=settings.AWS_ACTION_STALE_SECONDS + 5)
    AwsAction.objects.update(status=AwsAction.Status.RUNNING, started_at=long_ago, attempts=1)
    result = aws_actions_run()
    assert result.reclaimed == 1
    assert result.done == 1
    assert _status(iot, issued.aws_certificate_id) == "REVOKED"


def test_failed_actions_can_be_retried(in_aws, issued, settings) -> None:  # noqa: ANN001
    settings.AWS_ACTION_MAX_ATTEMPTS = 1
    row = jitp_settings_get()
    row.access_key = None
    row.save()
    aws_actions_enqueue(changes=[Change(Kind.REVOKE, certificate=issued)])
    aws_actions_run()
    failed = AwsAction.objects.get()
    assert failed.status == AwsAction.Status.FAILED
    assert "No access key" in failed.last_error
    assert aws_actions_retry(ids=[failed.pk]) == 1
    failed.refresh_from_db()
    assert failed.status == AwsAction.Status.PENDING
    assert failed.attempts == 0


def test_pacing_spaces_the_calls(in_aws, issued, settings) -> None:  # noqa: ANN001
    settings.AWS_ACTION_RATE = 20.0
    aws_actions_enqueue(
        changes=[Change(Kind.CONFIRM, certificate=issued), Change(Kind.REVOKE, certificate=issued)]
    )
    started = timezone.now()
    result = aws_actions_run()
    elapsed = (timezone.now() - started).total_seconds()
    assert result.done == 2
    assert elapsed >= (result.calls - 1) / settings.AWS_ACTION_RATE


def test_revoking_a_certificate_aws_has_not_seen_registers_it_revoked(
    moto_server,
    der_certificate_ids,
    access_key,
    issued,  # noqa: ANN001
) -> None:
    """A device revoked before its first connection: JITP must never activate it later."""
    row = jitp_settings_get()
    row.access_key = access_key
    row.region = "eu-west-1"
    row.save()
    iot = aws("iot", moto_server)
    iot.register_ca_certificate(
        caCertificate=issued.ca.certificate_pem, setAsActive=True, allowAutoRegistration=True
    )
    aws_actions_enqueue(changes=[Change(Kind.REVOKE, certificate=issued)], reason="keyCompromise")
    assert aws_actions_run().done == 1
    assert _status(iot, issued.aws_certificate_id) == "REVOKED"
