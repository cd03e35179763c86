"""A plain `celery -A portal worker` (no -Q) consumes every queue the portal routes to."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from portal.celery import app
from signing.models import OnboardingRequest

from .test_worker import _approved_requests


def test_every_routed_queue_is_declared() -> None:
    assert set(app.amqp.queues) == {"default", "signing", "fleet"}
    router = app.amqp.router
    assert router.route({}, "signing.tasks.sign_batch")["queue"].name == "signing"
    assert router.route({}, "provisioning.tasks.fleet_advance")["queue"].name == "fleet"
    assert router.route({}, "provisioning.tasks.purge_access_keys")["queue"].name == "default"


@pytest.mark.django_db(transaction=True)
def test_a_worker_started_without_queues_signs(celery_worker_process) -> None:  # noqa: ANN001
    ids = _approved_requests(3, key_type="ec-p256", status="pending")
    worker = celery_worker_process(queues=None)
    assert "-Q" not in worker.proc.args
    out = StringIO()
    call_command("approve_requests", "--all-pending", "--wait", "60", stdout=out)
    assert "Issued 3 of 3." in out.getvalue()
    assert OnboardingRequest.objects.filter(pk__in=ids, status="issued").count() == 3
