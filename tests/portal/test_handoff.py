"""Doors after a commit with the task queue unreachable: they answer normally and say the work
starts when the queue is back; the sweepers pick the recorded work up."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from devices.services import station_create
from portal.celery import app
from portal.handoff import DEFERRED_SENTENCE, handoffs_deferred, handoffs_reset, send_task
from provisioning.fleet import fleet_advance
from provisioning.jobs.models import Job
from provisioning.jobs.services import job_create, job_log
from provisioning.jobs.sweep import jobs_sweep
from signing.models import OnboardingRequest
from signing.services import onboarding_request_submit
from tests.devices.factories import DEVICE_PASSWORD, make_profile, make_station
from tests.signing.conftest import make_ec_csr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's Celery app points at a Redis port nobody listens on."""
    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    down = f"redis://127.0.0.1:{closed_port()}/0"
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", down)
    app.conf.broker_url = down
    app.conf.broker_transport_options = {}
    app._pool = None
    app.amqp._producer_pool = None
    handoffs_reset()
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved
        app._pool = None
        app.amqp._producer_pool = None


@pytest.fixture
def default_profile(db: None) -> None:
    profile = make_profile("outage")
    type(profile).objects.filter(pk=profile.pk).update(is_default=True)


def _pending(n: int) -> list[OnboardingRequest]:
    station, _ = station_create(name="st-outage")
    return [
        onboarding_request_submit(station=station, device_name=f"d{i}", csr=make_ec_csr())[0]
        for i in range(n)
    ]


def test_send_task_counts_and_logs_a_refused_send(broker_down, caplog) -> None:  # noqa: ANN001
    from signing.tasks import sign_batch

    assert send_task(sign_batch, [1, 2]) is False
    assert handoffs_deferred() == 1
    assert "signing.tasks.sign_batch" in caplog.text
    assert "[1, 2]" not in caplog.text  # the arguments are not logged


@pytest.mark.django_db(transaction=True)  # the hand-off runs when the service commits
def test_admin_approve_with_the_broker_down_answers_with_the_sentence(
    client,  # noqa: ANN001
    staff_user,  # noqa: ANN001
    default_profile,  # noqa: ANN001
    broker_down,  # noqa: ANN001
) -> None:
    staff_user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_onboardingrequest", "approve_onboardingrequest"]
        )
    )
    rows = _pending(3)
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:signing_onboardingrequest_changelist"),
        {"action": "approve_selected", "_selected_action": [r.pk for r in rows]},
    )
    assert response.status_code == 302
    page = client.get(response["Location"])
    text = page.content.decode()
    assert "Approved 3 requests" in text
    assert DEFERRED_SENTENCE.split(":")[0] in text
    assert set(OnboardingRequest.objects.values_list("status", flat=True)) == {"approved"}


@pytest.mark.django_db(transaction=True)
def test_approve_requests_with_the_broker_down_exits_0_with_the_sentence(
    default_profile,  # noqa: ANN001
    broker_down,  # noqa: ANN001
) -> None:
    _pending(2)
    out, err = StringIO(), StringIO()
    call_command("approve_requests", "--all-pending", stdout=out, stderr=err)
    assert "Approved 2 requests." in out.getvalue()
    assert DEFERRED_SENTENCE in err.getvalue()
    assert "Traceback" not in err.getvalue()


@pytest.mark.django_db
def test_the_approval_sweep_resends_what_the_outage_lost(
    default_profile,  # noqa: ANN001
    broker_down,  # noqa: ANN001
    django_capture_on_commit_callbacks,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signing import tasks
    from signing.services import onboarding_requests_approve, onboarding_requests_sweep

    rows = _pending(2)
    with django_capture_on_commit_callbacks(execute=True):
        onboarding_requests_approve(ids=[r.pk for r in rows], actor_label="test")
    assert handoffs_deferred() == 1
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.sign_batch, "apply_async", lambda args, **_: sent.append(*args))
    with django_capture_on_commit_callbacks(execute=True):
        assert onboarding_requests_sweep() == 0  # approved just now: not lost yet
    OnboardingRequest.objects.update(sign_enqueued_at=timezone.now() - timedelta(seconds=31))
    with django_capture_on_commit_callbacks(execute=True):
        assert onboarding_requests_sweep() == 2
    assert sent == [[r.pk for r in rows]]


@pytest.mark.django_db
def test_fleet_advance_starts_an_install_whose_start_was_lost(
    broker_down,  # noqa: ANN001
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    from provisioning.fleet import fleet_install_create, fleet_install_start

    make_station("st-a", online=True)
    with django_capture_on_commit_callbacks(execute=True):
        install = fleet_install_create(
            device_name="aws",
            profile=make_profile(),
            endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
            key_password=DEVICE_PASSWORD,
            stations=["st-a"],
        )
        fleet_install_start(install=install)
    assert handoffs_deferred() == 1
    fleet_advance()
    assert Job.objects.get(pk=install.job_id).status == Job.Status.QUEUED  # not lost yet
    fleet_advance(now=timezone.now() + timedelta(seconds=31))
    fleet_advance(now=timezone.now() + timedelta(seconds=31))  # twice: one start
    assert Job.objects.get(pk=install.job_id).status == Job.Status.RUNNING
    assert install.stations.get().dispatched_at is not None
    assert install.stations.get().attempts == 1


@pytest.mark.django_db
def test_jobs_sweep_resends_queued_requeues_jitp_and_fails_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from provisioning.jobs import sweep

    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(sweep, "send_task", lambda task, *a: sent.append((task.name, a)) or True)
    old = timezone.now() - timedelta(hours=1)
    queued = job_create(kind=Job.Kind.JITP_SETUP, title="queued")
    fresh = job_create(kind=Job.Kind.JITP_SETUP, title="fresh")
    jitp = job_create(kind=Job.Kind.JITP_SETUP, title="running jitp")
    claim = job_create(kind=Job.Kind.CLAIM_SETUP, title="running claim")
    busy = job_create(kind=Job.Kind.JITP_SETUP, title="running, logging")
    fleet = job_create(kind=Job.Kind.FLEET_INSTALL, title="fleet")
    Job.objects.filter(pk__in=[queued.pk, jitp.pk, claim.pk, busy.pk, fleet.pk]).update(
        created_at=old
    )
    Job.objects.filter(pk__in=[jitp.pk, claim.pk, busy.pk]).update(
        status=Job.Status.RUNNING, started_at=old
    )
    job_log(job=busy, message="step 3 of 6")

    assert jobs_sweep() == {"resent": 1, "requeued": 1, "failed": 1}
    assert sent == [
        ("provisioning.tasks.jitp_setup", (queued.pk,)),
        ("provisioning.tasks.jitp_setup", (jitp.pk,)),
    ]
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[jitp.pk] == Job.Status.QUEUED
    assert statuses[claim.pk] == Job.Status.FAILED
    assert statuses[busy.pk] == Job.Status.RUNNING
    assert statuses[fresh.pk] == statuses[fleet.pk] == Job.Status.QUEUED
    assert "stopped before it finished" in Job.objects.get(pk=claim.pk).result
    # A second sweep finds nothing new to requeue or fail (the requeued job is fresh again
    # only by its log line; it is queued, so it is re-sent, which the task makes harmless).
    sent.clear()
    assert jobs_sweep()["failed"] == 0


def test_a_dropped_database_connection_answers_503_not_500(rf) -> None:  # noqa: ANN001
    from django.db import OperationalError

    from portal.urls import server_error

    try:
        raise OperationalError("terminating connection due to administrator command")
    except OperationalError:
        api = server_error(rf.get("/api/v1/agent/config"))
        page = server_error(rf.get("/admin/"))
    assert api.status_code == page.status_code == 503
    assert api["Retry-After"] == "5"
    assert json.loads(api.content)["code"] == "database_unavailable"
    assert "terminating" not in api.content.decode()
    try:
        raise ValueError("a bug")
    except ValueError:
        assert server_error(rf.get("/admin/")).status_code == 500
