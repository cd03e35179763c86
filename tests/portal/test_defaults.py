"""Defaults a fresh install gets: DEBUG off, the beat schedule that leaves staff's choices alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management.sql import emit_post_migrate_signal

from portal.schedules import PERIODIC_TASKS
from tests.conftest import ROOT


@pytest.mark.django_db
def test_installing_the_schedule_again_never_re_enables_a_disabled_task() -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    name, task, seconds = PERIODIC_TASKS[0]
    row = PeriodicTask.objects.get(name=name)  # installed by the test database's migrate
    assert row.enabled
    row.enabled = False
    row.interval = IntervalSchedule.objects.create(every=999, period=IntervalSchedule.SECONDS)
    row.save()
    other = PeriodicTask.objects.get(name=PERIODIC_TASKS[1][0])
    other.delete()

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")  # as migrate does

    row.refresh_from_db()
    assert row.enabled is False  # staff's switch stays off
    assert (row.task, row.interval.every) == (task, seconds)  # the code's schedule still wins
    assert PeriodicTask.objects.get(name=PERIODIC_TASKS[1][0]).enabled  # a new row starts on


def _debug_in_subprocess(**extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "PORTAL_PRODUCTION"}}
    env.update(extra, DJANGO_SETTINGS_MODULE="portal.settings", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.DEBUG)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.integration
def test_debug_is_off_unless_turned_on() -> None:
    assert _debug_in_subprocess() == "False"
    assert _debug_in_subprocess(DEBUG="1") == "True"
