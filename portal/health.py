"""Cheap health signals for the admin: is the broker reachable, is beat running, is a worker up.

Kept cheap per page view: two indexed single-row queries and a broker probe whose result is
cached in the process for :data:`BROKER_PROBE_TTL` seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.utils import timezone

STALE_AFTER = timedelta(minutes=3)
BROKER_PROBE_TTL = 30.0

_broker_cache: dict[str, tuple[float, str | None]] = {}
_broker_lock = threading.Lock()


def broker_problem(*, url: str | None = None) -> str | None:
    """A sentence when the Celery broker (``url``, default: the configured one) cannot be
    reached, else None; the answer is cached briefly per process."""
    from portal.celery import app

    url = url or str(app.conf.broker_write_url or app.conf.broker_url or "")
    now = time.monotonic()
    with _broker_lock:
        cached = _broker_cache.get(url)
        if cached and now - cached[0] < BROKER_PROBE_TTL:
            return cached[1]
    problem: str | None = None
    try:
        with app.connection_for_write(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            safe_url = conn.as_uri()  # masks any password
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable" to the operator
        from kombu import Connection

        safe_url = Connection(url).as_uri() if url else "(unset)"
        problem = (
            f"The Celery broker {safe_url} cannot be reached ({type(exc).__name__}): "
            "background work (purges, signing, jobs) is not running."
        )
    with _broker_lock:
        _broker_cache[url] = (now, problem)
    return problem


def _minutes_since(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    minutes = int((now - at).total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''} ago"


def heartbeat_schedule() -> dict[str, object] | None:
    """The heartbeat's periodic-task row (last run, install time, run count), if installed."""
    from django_celery_beat.models import PeriodicTask

    from .schedules import HEARTBEAT_TASK_NAME

    return (
        PeriodicTask.objects.filter(name=HEARTBEAT_TASK_NAME)
        .values("last_run_at", "date_changed", "total_run_count")
        .first()
    )


def beat_problem(
    *, now: datetime | None = None, schedule: dict[str, object] | None = None
) -> str | None:
    """A sentence when beat has not sent the heartbeat task recently.

    Right after ``migrate`` installs the schedule, beat gets :data:`STALE_AFTER` to send it.
    """
    now = now or timezone.now()
    schedule = schedule if schedule is not None else heartbeat_schedule()
    last = schedule.get("last_run_at") if schedule else None
    if isinstance(last, datetime) and now - last <= STALE_AFTER:
        return None
    installed = schedule.get("date_changed") if schedule else None
    if last is None and isinstance(installed, datetime) and now - installed <= STALE_AFTER:
        return None
    return (
        "Celery beat has not run recently (last heartbeat sent "
        f"{_minutes_since(last if isinstance(last, datetime) else None, now)}): start it with "
        "`celery -A portal beat -S django_celery_beat.schedulers:DatabaseScheduler` so that "
        "access keys are purged on time."
    )


def worker_problem(
    *, now: datetime | None = None, schedule: dict[str, object] | None = None
) -> str | None:
    """A sentence when no worker has run the heartbeat task recently.

    Before any worker ever answered, warn only once beat has sent the heartbeat twice (a
    worker has had a whole interval to run it).
    """
    from .models import Heartbeat

    now = now or timezone.now()
    last = Heartbeat.objects.filter(name="worker").values_list("at", flat=True).first()
    if last is not None and now - last <= STALE_AFTER:
        return None
    count = schedule.get("total_run_count") if schedule else 0
    sent = count if isinstance(count, int) else 0
    if last is None and sent < 2:
        return None
    return (
        f"No Celery worker has answered recently (last heartbeat {_minutes_since(last, now)}): "
        "start one with `celery -A portal worker -Q default,signing,fleet`."
    )


def admin_warnings(*, now: datetime | None = None) -> list[str]:
    """Every health problem an operator should see on the admin index, as sentences."""
    from .checks import encryption_key_check

    warnings: list[str] = [str(e.msg) for e in encryption_key_check()]
    broker = broker_problem()
    if broker:
        warnings.append(broker)
    try:
        schedule = heartbeat_schedule()
        beat = beat_problem(now=now, schedule=schedule)
        if beat:
            warnings.append(beat)
        else:  # a worker can only be judged when beat is sending heartbeats
            worker = worker_problem(now=now, schedule=schedule)
            if worker:
                warnings.append(worker)
    except DatabaseError:
        warnings.append("The database tables for Celery are missing: run `manage.py migrate`.")
    return warnings
