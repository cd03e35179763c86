"""Admin doors for access keys, the AWS service and the AWS API call log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from portal.models import AuditEvent
from provisioning.aws.services import aws_service_update
from provisioning.models import AccessKey, AwsApiCall, AwsService

from .conftest import make_key_id

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:provisioning_accesskey_changelist"


def test_add_form_stores_key_and_never_renders_the_secret(
    admin_client,
    secret: str,
    caplog,  # noqa: ANN001
) -> None:
    caplog.set_level("DEBUG")
    add_url = reverse("admin:provisioning_accesskey_add")
    page = admin_client.get(add_url)
    assert page.status_code == 200
    assert b'type="password"' in page.content
    key_id = make_key_id()
    response = admin_client.post(
        add_url,
        {"access_key_id": key_id, "secret": secret, "store_for": "7d", "description": "JITP setup"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    key = AccessKey.objects.get(access_key_id=key_id)
    assert key.secret == secret
    assert key.purge_at - key.created_at == timedelta(days=7)
    assert key.created_by is not None

    change = admin_client.get(reverse("admin:provisioning_accesskey_change", args=[key.pk]))
    assert change.status_code == 200
    html = change.content.decode()
    assert key_id in html
    assert secret not in html
    assert 'name="secret"' not in html  # no secret field at all, not even masked

    listing = admin_client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    html = listing.content.decode()
    assert key_id in html
    assert secret not in html
    assert "icon-yes" in html  # stored: yes
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("key_id", "secret", "message"),
    [
        ("AKIA123", "GOOD", "AKIA or ASIA followed by 16"),
        ("GOOD", "short", "exactly 40 characters"),
    ],
)
def test_add_form_errors_do_not_echo_the_secret(
    admin_client,
    key_id: str,
    secret: str,
    message: str,  # noqa: ANN001
) -> None:
    from .conftest import make_secret

    real_secret = make_secret() if secret == "GOOD" else secret
    response = admin_client.post(
        reverse("admin:provisioning_accesskey_add"),
        {
            "access_key_id": make_key_id() if key_id == "GOOD" else key_id,
            "secret": real_secret,
            "store_for": "1d",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert real_secret not in html
    assert not AccessKey.objects.exists()


def test_add_form_rejects_duplicate_id_and_longer_periods(
    admin_client,
    access_key_factory,
    secret: str,  # noqa: ANN001
) -> None:
    existing = access_key_factory()
    url = reverse("admin:provisioning_accesskey_add")
    dup = admin_client.post(
        url, {"access_key_id": existing.access_key_id, "secret": secret, "store_for": "1d"}
    )
    assert "already stored" in dup.content.decode()
    long = admin_client.post(
        url, {"access_key_id": make_key_id(), "secret": secret, "store_for": "90d"}
    )
    assert "Select a valid choice" in long.content.decode()
    assert secret not in dup.content.decode() + long.content.decode()
    assert AccessKey.objects.count() == 1


def test_changelist_shows_purged_key_as_not_stored(admin_client, access_key_factory) -> None:  # noqa: ANN001
    now = timezone.now()
    due = access_key_factory(store_for="1h", now=now - timedelta(hours=3))
    access_key_factory(store_for="1h", now=now - timedelta(hours=2))
    kept = access_key_factory(store_for="30d")
    # "Clean up purged keys" sweeps every due key, with or without a selection.
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "clean_up_purged_keys", "index": 0}, follow=True
    )
    assert "Purged 2 access keys whose storage period had elapsed." in response.content.decode()
    due.refresh_from_db()
    kept.refresh_from_db()
    assert due.secret is None
    assert due.purged_at is not None
    assert kept.is_stored
    purged_by = AuditEvent.objects.filter(action="access_key_purge").values_list(
        "actor_label", flat=True
    )
    assert set(purged_by) == {"admin"}
    again = admin_client.post(
        reverse(CHANGELIST),
        {"action": "clean_up_purged_keys", ACTION_CHECKBOX_NAME: [kept.pk]},
        follow=True,
    )
    assert "nothing to clean up" in again.content.decode()
    stored_no = admin_client.get(reverse(CHANGELIST), {"stored": "no"}).content.decode()
    assert due.access_key_id in stored_no
    assert kept.access_key_id not in stored_no
    assert "icon-no" in stored_no


def test_test_key_action_reports_account_and_arn(
    admin_client,
    access_key_factory,
    aws_enabled,
    moto_aws,
    secret: str,  # noqa: ANN001
) -> None:
    good = access_key_factory(secret=secret)
    gone = access_key_factory(store_for="1h", now=timezone.now() - timedelta(hours=2))
    from provisioning.aws.services import access_key_purge_due

    access_key_purge_due()
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "test_keys", ACTION_CHECKBOX_NAME: [good.pk, gone.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert f"Access key {good.access_key_id} works: account 123456789012" in html
    assert f"Access key {gone.access_key_id} is no longer stored" in html
    assert "Tested 2 access keys: 1 worked, 1 failed." in html
    assert secret not in html
    assert secret not in str(list(AwsApiCall.objects.values()))


def test_test_key_action_on_disabled_service_says_so(admin_client, access_key_factory) -> None:  # noqa: ANN001
    key = access_key_factory()
    aws_service_update(enabled=False)
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "test_keys", ACTION_CHECKBOX_NAME: [key.pk]}, follow=True
    )
    assert "The AWS service is disabled" in response.content.decode()
    assert "Tested 1 access key: 0 worked, 1 failed." in response.content.decode()


def test_aws_service_is_one_row_per_site(admin_client) -> None:  # noqa: ANN001
    response = admin_client.get(reverse("admin:provisioning_awsservice_changelist"))
    assert response.status_code == 302
    service = AwsService.objects.get()
    assert response.url == reverse("admin:provisioning_awsservice_change", args=[service.pk])
    assert admin_client.get(reverse("admin:provisioning_awsservice_add")).status_code == 403
    page = admin_client.get(response.url).content.decode()
    assert '<option value="eu-west-1" selected>' in page
    saved = admin_client.post(response.url, {"enabled": "on", "region": "us-east-1"})
    assert saved.status_code == 302
    service.refresh_from_db()
    assert service.enabled
    assert service.region == "us-east-1"
    assert AuditEvent.objects.filter(action="aws_service_update").exists()
    bad = admin_client.post(response.url, {"enabled": "on", "region": "mars-1"})
    assert "Select a valid choice" in bad.content.decode()


def test_call_log_is_read_only_and_filterable(admin_client) -> None:  # noqa: ANN001
    ok = AwsApiCall.objects.create(
        service="sts", operation="GetCallerIdentity", http_status=200, request_id="req-ok"
    )
    err = AwsApiCall.objects.create(
        service="iot",
        operation="RegisterCACertificate",
        http_status=400,
        error_code="InvalidRequestException",
        request_id="req-err",
    )
    url = reverse("admin:provisioning_awsapicall_changelist")
    errors_only = admin_client.get(url, {"outcome": "error"}).content.decode()
    assert "req-err" in errors_only
    assert "req-ok" not in errors_only
    ok_only = admin_client.get(url, {"outcome": "ok"}).content.decode()
    assert "req-ok" in ok_only
    assert "req-err" not in ok_only
    by_op = admin_client.get(url, {"operation": "GetCallerIdentity"}).content.decode()
    assert "req-ok" in by_op
    assert "req-err" not in by_op
    by_service = admin_client.get(url, {"service": "iot"}).content.decode()
    assert "req-err" in by_service
    assert "req-ok" not in by_service
    assert admin_client.get(reverse("admin:provisioning_awsapicall_add")).status_code == 403
    detail = admin_client.get(reverse("admin:provisioning_awsapicall_change", args=[ok.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()  # view-only: nothing to save
    delete = admin_client.post(reverse("admin:provisioning_awsapicall_delete", args=[err.pk]))
    assert delete.status_code == 403
    assert AwsApiCall.objects.count() == 2


def test_delete_is_audited_and_frees_the_id(admin_client, access_key_factory) -> None:  # noqa: ANN001
    key = access_key_factory()
    url = reverse("admin:provisioning_accesskey_delete", args=[key.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not AccessKey.objects.exists()
    event = AuditEvent.objects.get(action="access_key_delete")
    assert event.object_repr == key.access_key_id
    assert event.actor_label == "admin"
    access_key_factory(access_key_id=key.access_key_id)  # may be entered again


def test_change_form_edits_only_the_description(
    admin_client,
    access_key_factory,
    secret: str,  # noqa: ANN001
) -> None:
    key = access_key_factory(secret=secret)
    url = reverse("admin:provisioning_accesskey_change", args=[key.pk])
    response = admin_client.post(
        url, {"description": "for JITP", "secret": "x" * 40, "store_for": "30d"}
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.description == "for JITP"
    assert key.secret == secret  # posted fields that are not on the form change nothing
    assert key.store_for == "1d"
    assert AuditEvent.objects.filter(action="access_key_update").exists()
