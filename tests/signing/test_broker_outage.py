"""Approving while Redis is down: the command answers like any approval, and once Redis is
back (empty) a real beat + worker issue the requests within one sweep period."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.handoff import DEFERRED_SENTENCE
from portal.schedules import install_periodic_tasks
from signing.models import OnboardingRequest
from signing.services import SWEEP_AFTER_SECONDS
from tests.conftest import ROOT, subprocess_env, wait_for
from tests.portal.test_handoff import _pending, default_profile  # noqa: F401  (fixture)

REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(REDIS is None, reason="redis-server is not installed."),
]
SWEEP_INTERVAL = 30  # portal/schedules.py: the approval sweep's beat interval
STARTUP_ALLOWANCE = 20  # worker and beat start on a busy 2-core runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A private, empty, non-persistent redis-server on ``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS is not None
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return True
            except OSError:
                return False

        wait_for(up, timeout=20, message="redis-server to listen")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis(_free_port())
    server.start()
    yield server
    server.kill()


@pytest.mark.django_db(transaction=True)
def test_approving_with_redis_down_then_issued_within_one_sweep_period(
    redis: Redis,
    default_profile,  # noqa: ANN001, F811
    celery_worker_process,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    broker = f"redis://127.0.0.1:{redis.port}/0"
    ids = [r.pk for r in _pending(4)]
    redis.kill()

    result = subprocess.run(
        [sys.executable, "manage.py", "approve_requests", "--all-pending"],
        cwd=ROOT,
        env=subprocess_env(CELERY_BROKER_URL=broker),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Approved 4 requests." in result.stdout
    assert DEFERRED_SENTENCE in result.stderr
    assert "Traceback" not in result.stderr
    assert set(OnboardingRequest.objects.values_list("status", flat=True)) == {"approved"}

    redis.start()  # back, and empty: the signing messages were never sent
    back = time.monotonic()
    install_periodic_tasks()
    celery_worker_process(queues="default,signing,fleet", CELERY_BROKER_URL=broker)
    beat_log = (tmp_path / "beat.log").open("w")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "beat", "-l", "INFO"]
        + ["-S", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile="],
        cwd=ROOT,
        env=subprocess_env(CELERY_BROKER_URL=broker),
        stdout=beat_log,
        stderr=subprocess.STDOUT,
    )
    try:
        period = SWEEP_INTERVAL + SWEEP_AFTER_SECONDS
        wait_for(
            lambda: OnboardingRequest.objects.filter(pk__in=ids, status="issued").count() == 4,
            timeout=period + STARTUP_ALLOWANCE,
            interval=0.5,
            message=f"the requests to be issued within one sweep period ({period} s)",
        )
        assert time.monotonic() - back <= period + STARTUP_ALLOWANCE
    finally:
        beat.terminate()
        beat.wait(20)
        beat_log.close()
