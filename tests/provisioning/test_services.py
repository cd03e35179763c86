"""Access-key services: validation, encryption at rest, the purge sweep, the call-log prune."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from portal.models import AuditEvent
from provisioning.aws import services
from provisioning.models import AccessKey, AwsApiCall

from .conftest import make_key_id, make_secret


def raw_secret_column(pk: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM provisioning_accesskey WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def raw_table_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM provisioning_accesskey")
        return repr(cursor.fetchall())


@pytest.mark.django_db
def test_create_stores_secret_encrypted_and_purge_date(secret: str) -> None:
    now = timezone.now()
    key = services.access_key_create(
        access_key_id="AKIAABCDEFGHIJKLMNOP", secret=secret, store_for="8h", now=now
    )
    assert key.purge_at == now + timedelta(hours=8)
    assert AccessKey.objects.get(pk=key.pk).secret == secret
    stored = raw_secret_column(key.pk)
    assert stored
    assert stored != secret
    assert secret not in raw_table_text()
    assert AuditEvent.objects.filter(action="access_key_create", object_id=str(key.pk)).exists()


@pytest.mark.parametrize(
    ("key_id", "secret", "store_for", "field", "fragment"),
    [
        ("AKIA123", None, "1d", "access_key_id", "16 upper-case"),
        ("akiaabcdefghijklmnop", None, "1d", "access_key_id", "AKIA or ASIA"),
        ("AKIDABCDEFGHIJKLMNOP", None, "1d", "access_key_id", "AKIA or ASIA"),
        (None, "x" * 39, "1d", "secret", "exactly 40"),
        (None, "x" * 41, "1d", "secret", "exactly 40"),
        (None, "é" * 40, "1d", "secret", "exactly 40"),
        (None, None, "90d", "store_for", "storage period"),
    ],
)
@pytest.mark.django_db
def test_create_rejects_bad_input_with_a_sentence(
    key_id: str | None, secret: str | None, store_for: str, field: str, fragment: str
) -> None:
    secret = secret or make_secret()
    with pytest.raises(ValidationError) as info:
        services.access_key_create(
            access_key_id=key_id or make_key_id(), secret=secret, store_for=store_for
        )
    assert field in info.value.message_dict
    assert fragment in " ".join(info.value.message_dict[field])
    assert secret not in str(info.value)
    assert not AccessKey.objects.exists()


@pytest.mark.django_db
def test_create_accepts_asia_and_rejects_duplicate_id(access_key_factory) -> None:  # noqa: ANN001
    key_id = make_key_id("ASIA")
    access_key_factory(access_key_id=key_id)
    with pytest.raises(ValidationError, match="already stored"):
        access_key_factory(access_key_id=key_id)
    assert AccessKey.objects.count() == 1


@pytest.mark.django_db
def test_purge_due_nulls_only_elapsed_keys_and_audits(access_key_factory) -> None:  # noqa: ANN001
    now = timezone.now()
    old = access_key_factory(store_for="1h", now=now - timedelta(hours=2))
    fresh = access_key_factory(store_for="1h", now=now)
    assert services.access_key_purge_due(now=now) == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.secret is None
    assert old.purged_at == now
    assert not old.is_stored
    assert raw_secret_column(old.pk) is None  # gone, not flagged: no ciphertext left
    assert fresh.is_stored
    assert raw_secret_column(fresh.pk) is not None
    events = AuditEvent.objects.filter(action="access_key_purge")
    assert [e.object_id for e in events] == [str(old.pk)]
    assert events[0].actor_label == "system"
    # Running again finds nothing more and writes no second audit entry.
    assert services.access_key_purge_due(now=now) == 0
    assert AuditEvent.objects.filter(action="access_key_purge").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_purge_each_key_once(access_key_factory) -> None:  # noqa: ANN001
    past = timezone.now() - timedelta(days=2)
    keys = [access_key_factory(store_for="1d", now=past) for _ in range(6)]
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        from django.db import connections

        try:
            barrier.wait()
            results.append(services.access_key_purge_due())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(results) == len(keys)
    assert AuditEvent.objects.filter(action="access_key_purge").count() == len(keys)
    assert not AccessKey.objects.filter(secret__isnull=False).exists()


@pytest.mark.django_db
def test_call_log_prune_uses_retention(settings) -> None:  # noqa: ANN001
    settings.AWS_CALL_LOG_RETENTION_DAYS = 7
    now = timezone.now()
    old = AwsApiCall.objects.create(
        service="sts", operation="GetCallerIdentity", at=now - timedelta(days=8)
    )
    kept = AwsApiCall.objects.create(
        service="sts", operation="GetCallerIdentity", at=now - timedelta(days=6)
    )
    assert services.aws_call_log_prune(now=now) == 1
    assert list(AwsApiCall.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not AwsApiCall.objects.filter(pk=old.pk).exists()


@pytest.mark.django_db
def test_aws_service_update_validates_region_and_audits() -> None:
    service = services.aws_service_update(enabled=True, region="us-east-1")
    assert service.enabled
    assert service.region == "us-east-1"
    assert AuditEvent.objects.filter(action="aws_service_update").count() == 1
    with pytest.raises(ValidationError) as info:
        services.aws_service_update(region="mars-north-1")
    assert "region" in info.value.message_dict
    service.refresh_from_db()
    assert service.region == "us-east-1"


def test_secret_never_in_logs_during_add_and_purge(
    access_key_factory,
    caplog,
    secret: str,  # noqa: ANN001
) -> None:
    caplog.set_level("DEBUG")
    key = access_key_factory(secret=secret, store_for="1h", now=timezone.now() - timedelta(hours=2))
    assert services.access_key_purge_due() == 1
    assert key.access_key_id in caplog.text  # the logs do speak about the key…
    assert secret not in caplog.text  # …but never its secret
