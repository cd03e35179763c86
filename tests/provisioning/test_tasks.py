"""The purge task, run by a real Celery worker from the broker (not eager mode)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from portal.models import AuditEvent
from provisioning import tasks
from provisioning.models import AccessKey
from tests.conftest import wait_for


@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_purge_task_from_the_broker(
    celery_worker_process,
    access_key_factory,
    settings,
    secret: str,  # noqa: ANN001
) -> None:
    assert not settings.CELERY_TASK_ALWAYS_EAGER
    due = access_key_factory(secret=secret, store_for="1h", now=timezone.now() - timedelta(hours=2))
    kept = access_key_factory(store_for="30d")
    worker = celery_worker_process(queues="default")
    tasks.purge_access_keys.delay()

    def purged() -> bool:
        due.refresh_from_db()
        return due.purged_at is not None

    wait_for(purged, timeout=60, message="the worker to purge the key")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM provisioning_accesskey WHERE id = %s", [due.pk])
        assert cursor.fetchone()[0] is None
    kept.refresh_from_db()
    assert kept.is_stored
    assert AuditEvent.objects.filter(action="access_key_purge", object_id=str(due.pk)).count() == 1
    assert "provisioning.tasks.purge_access_keys" in worker.output
    assert secret not in worker.output
    assert AccessKey.objects.filter(secret__isnull=False).count() == 1


def test_tasks_are_acks_late_and_scheduled() -> None:
    from portal.schedules import PERIODIC_TASKS

    assert tasks.purge_access_keys.acks_late
    assert tasks.prune_aws_call_log.acks_late
    scheduled = {task: seconds for _, task, seconds in PERIODIC_TASKS}
    assert scheduled["provisioning.tasks.purge_access_keys"] == 60
    assert "provisioning.tasks.prune_aws_call_log" in scheduled
