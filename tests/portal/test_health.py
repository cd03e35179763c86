"""Admin index warnings: beat, worker and broker health, from the heartbeat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from portal import health
from portal.schedules import HEARTBEAT_TASK_NAME
from portal.services import heartbeat_record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_broker_probe() -> None:
    health._broker_cache.clear()


def set_beat(
    *, minutes_ago: float | None, runs: int = 5, installed_minutes_ago: float = 60
) -> None:
    now = timezone.now()
    task = PeriodicTask.objects.get(name=HEARTBEAT_TASK_NAME)
    PeriodicTask.objects.filter(pk=task.pk).update(
        last_run_at=None if minutes_ago is None else now - timedelta(minutes=minutes_ago),
        total_run_count=runs,
        date_changed=now - timedelta(minutes=installed_minutes_ago),
    )


def test_all_healthy_shows_no_warning(admin_client) -> None:  # noqa: ANN001
    set_beat(minutes_ago=0.5)
    heartbeat_record(name="worker")
    assert health.admin_warnings() == []
    page = admin_client.get("/admin/").content.decode()
    assert "portal-health" not in page


def test_beat_stopped_is_warned_on_the_admin_index(admin_client) -> None:  # noqa: ANN001
    set_beat(minutes_ago=10)
    heartbeat_record(name="worker")
    page = admin_client.get("/admin/").content.decode()
    assert "Celery beat has not run recently (last heartbeat sent 10 minutes ago)" in page
    assert 'class="warning"' in page


def test_freshly_installed_schedule_gets_a_grace_period() -> None:
    set_beat(minutes_ago=None, runs=0, installed_minutes_ago=1)
    assert health.admin_warnings() == []
    set_beat(minutes_ago=None, runs=0, installed_minutes_ago=5)
    assert any("last heartbeat sent never" in w for w in health.admin_warnings())


def test_no_worker_is_warned_when_beat_runs(admin_client) -> None:  # noqa: ANN001
    set_beat(minutes_ago=0.2, runs=3)
    page = admin_client.get("/admin/").content.decode()
    assert "No Celery worker has answered recently (last heartbeat never)" in page
    heartbeat_record(name="worker")
    assert health.admin_warnings() == []
    from portal.models import Heartbeat

    Heartbeat.objects.update(at=timezone.now() - timedelta(minutes=4))
    assert health.admin_warnings() == [
        "No Celery worker has answered recently (last heartbeat 4 minutes ago): start one "
        "with `celery -A portal worker -Q default,signing,fleet`."
    ]


def test_unreachable_broker_is_warned_without_its_password() -> None:
    import socket

    set_beat(minutes_ago=0.2)
    heartbeat_record(name="worker")
    assert health.broker_problem() is None  # the configured broker answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    problem = health.broker_problem(url=f"redis://:hunter2secret@127.0.0.1:{port}/0")
    assert problem is not None
    assert problem.startswith(f"The Celery broker redis://:**@127.0.0.1:{port}/0 cannot be")
    assert "hunter2secret" not in problem


def test_admin_index_shows_broker_problem(admin_client, monkeypatch) -> None:  # noqa: ANN001
    set_beat(minutes_ago=0.2)
    heartbeat_record(name="worker")
    monkeypatch.setattr(
        health, "broker_problem", lambda: "The Celery broker redis://x cannot be reached (Boom)."
    )
    page = admin_client.get("/admin/").content.decode()
    assert '<li class="warning">The Celery broker redis://x cannot be reached (Boom).</li>' in page


def test_heartbeat_task_stamps_the_worker_row() -> None:
    from portal.models import Heartbeat
    from portal.tasks import heartbeat

    heartbeat.apply()
    assert timezone.now() - Heartbeat.objects.get(name="worker").at < timedelta(seconds=5)


def test_health_command_exits_one_with_the_sentences() -> None:
    from django.core.management import CommandError, call_command

    set_beat(minutes_ago=10)
    with pytest.raises(CommandError, match="Celery beat has not run recently"):
        call_command("health", "--component", "beat")
    set_beat(minutes_ago=0.1)
    heartbeat_record(name="worker")
    call_command("health", "--component", "beat")
    call_command("health", "--component", "worker")
    call_command("health")


@pytest.mark.django_db(transaction=True)
def test_real_beat_and_worker_clear_the_warnings(celery_worker_process) -> None:  # noqa: ANN001
    """Beat sends the heartbeat, a worker stamps it, the admin has nothing to warn about."""
    import subprocess
    import sys

    from django_celery_beat.models import IntervalSchedule

    from portal.models import Heartbeat
    from tests.conftest import ROOT, subprocess_env, wait_for

    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    task = PeriodicTask.objects.get(name=HEARTBEAT_TASK_NAME)
    task.interval = every_second
    task.save()
    PeriodicTask.objects.filter(pk=task.pk).update(  # past the install grace
        date_changed=timezone.now() - timedelta(minutes=10)
    )
    PeriodicTask.objects.exclude(pk=task.pk).update(enabled=False)
    assert any("Celery beat has not run recently" in w for w in health.admin_warnings())

    celery_worker_process(queues="default")
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "beat",
            "-l",
            "INFO",
            "-S",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--pidfile=",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: Heartbeat.objects.filter(name="worker").exists(),
            timeout=60,
            message="the worker to run the heartbeat sent by beat",
        )
        wait_for(
            lambda: health.admin_warnings() == [], timeout=30, message="beat to record its last run"
        )
    finally:
        beat.terminate()
        beat.wait(20)
