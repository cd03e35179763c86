"""Real Celery workers: a worker killed (-9) mid-batch leaves no duplicates and no orphans.

Signing is made slow on purpose (an RSA-4096 CA, batches of 200) so that the kill lands
inside the second batch; the sweeper then hands the lost batch to a new worker.
"""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone

from devices.models import MqttDevice, Station
from signing.csr import csr_validate
from signing.models import IssuedCertificate, OnboardingRequest
from signing.services import ca_generate, signing_profile_create
from tests.conftest import wait_for
from tests.signing.conftest import make_ec_csr

PASSWORD = "worker-ca-pass-1"


def _approved_requests(
    n: int, *, key_type: str = "rsa-4096", status: str = "approved"
) -> list[int]:
    ca = ca_generate(
        alias=f"w-{key_type}", dn="CN=Worker CA,C=DE", password=PASSWORD, key_type=key_type
    )
    profile = signing_profile_create(
        name=f"w-{key_type}", ca=ca, ca_password=PASSWORD, country="DE", is_default=True
    )
    station = Station.objects.create(name="st-w", token_hash="x" * 64, token_prefix="x")
    devices = MqttDevice.objects.bulk_create(
        [MqttDevice(station=station, name=f"d{i}") for i in range(n)]
    )
    pem = make_ec_csr()
    valid = csr_validate(pem)
    now = timezone.now()
    rows = OnboardingRequest.objects.bulk_create(
        [
            OnboardingRequest(
                station=station,
                device=d,
                profile=profile,
                csr_pem=pem,
                key_type=valid.key_type,
                public_key_fingerprint=valid.public_key_fingerprint,
                status=status,
                decided_at=now if status == "approved" else None,
                sign_enqueued_at=now if status == "approved" else None,
            )
            for d in devices
        ]
    )
    return sorted(r.pk for r in rows)


def _assert_consistent(total: int) -> int:
    issued = OnboardingRequest.objects.filter(status="issued").count()
    certs = IssuedCertificate.objects.count()
    # no orphans: every certificate has its issued request and every issued request its row
    assert certs == issued
    assert not OnboardingRequest.objects.filter(status="issued", certificate__isnull=True).exists()
    assert not IssuedCertificate.objects.exclude(request__status="issued").exists()
    # no duplicates: one certificate per request, unique serials
    assert not (
        IssuedCertificate.objects.values("request_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .exists()
    )
    assert IssuedCertificate.objects.values("serial").distinct().count() == certs
    assert OnboardingRequest.objects.filter(status__in=["issued", "approved"]).count() == total
    return issued


@pytest.mark.django_db(transaction=True)
def test_killed_worker_mid_batch_then_sweeper_completes_without_duplicates(
    celery_worker_process,  # noqa: ANN001
) -> None:
    from signing.tasks import sweep_approved_requests

    total = 600
    _approved_requests(total)
    worker = celery_worker_process(queues="signing")
    sweep_approved_requests.delay(0)  # hands all 600 out in 3 batches of 200
    wait_for(
        lambda: OnboardingRequest.objects.filter(status="issued").count() >= 200,
        timeout=120,
        message="the first batch to be issued",
    )
    wait_for(
        lambda: worker.output.count("signing batch of 200 requests started") >= 2,
        timeout=30,
        message="the second batch to start",
    )
    time.sleep(0.3)
    worker.kill()
    issued = _assert_consistent(total)
    assert issued < total, "the kill came too late to land inside a batch"
    assert issued % 200 == 0, "a batch is all-or-nothing: a killed batch leaves no rows"

    celery_worker_process(queues="signing")
    sweep_approved_requests.delay(0)
    sweep_approved_requests.delay(0)  # twice at once: still no duplicates
    wait_for(
        lambda: OnboardingRequest.objects.filter(status="issued").count() == total,
        timeout=180,
        message="every request to be issued after the sweep",
    )
    time.sleep(1.0)  # let any racing duplicate batch finish: it must find nothing to sign
    assert _assert_consistent(total) == total
    assert (
        MqttDevice.objects.filter(
            status="certificate_issued", current_certificate__isnull=False
        ).count()
        == total
    )


@pytest.mark.django_db(transaction=True)
def test_approve_requests_wait_returns_when_issued(celery_worker_process) -> None:  # noqa: ANN001
    ids = _approved_requests(5, key_type="ec-p256", status="pending")
    celery_worker_process(queues="signing")
    out = StringIO()
    call_command("approve_requests", "--all-pending", "--wait", "60", stdout=out)
    assert "Approved 5 requests." in out.getvalue()
    assert "Issued 5 of 5." in out.getvalue()
    assert OnboardingRequest.objects.filter(pk__in=ids, status="issued").count() == 5
