"""Shared fixtures (a real Celery worker process, users) and the sorting of tests into tiers.

Every test sits in one tier: unit (no marker: no process, no server), ``integration`` (starts
a real process or server: Celery worker, live server, the AWS stand-in, Mosquitto, moto's
server, a ``manage.py`` subprocess), ``e2e`` (the whole chain) or ``browser``. The tier comes
from the fixtures a test uses and from where it lives; a test that starts a process by hand
says so with ``pytest.mark.integration``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

# Fixtures that start a process or a server, as "<defining module's last name>.<fixture>" (a
# fixture of the same name defined elsewhere, e.g. an in-process moto `aws`, does not count).
PROCESS_FIXTURES = frozenset(
    {
        "conftest.celery_worker_process",  # a `celery worker` subprocess
        "fixtures.live_server",  # pytest-django's live server
        "conftest.moto_server",  # moto's HTTP server (tests/provisioning)
        "conftest.aws",  # the AWS stand-in, LocalAws (tests/localaws)
        "test_broker.broker",  # the stand-in's broker thread (tests/localaws)
        "conftest.broker",  # Mosquitto (tests/agent)
        "conftest.portal",  # the agent tests' fake portal, an HTTP server (tests/agent)
    }
)
TIERS = ("integration", "e2e", "browser")


def _fixtures_used(item: pytest.Item) -> set[str]:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    used = set()
    for name, defs in info.name2fixturedefs.items():
        if defs:
            module = getattr(defs[-1].func, "__module__", "") or ""
            used.add(f"{module.rsplit('.', 1)[-1]}.{name}")
    return used


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test its tier: browser and e2e by folder or module name, integration by
    fixture; an explicit marker wins, and a test is in one tier only."""
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue
        parts = item.path.relative_to(TESTS).parts if item.path.is_relative_to(TESTS) else ()
        if parts[:1] == ("browser",):
            item.add_marker(pytest.mark.browser)
        elif parts[:1] == ("e2e",) or item.path.stem.endswith("_e2e"):
            item.add_marker(pytest.mark.e2e)
        elif PROCESS_FIXTURES & _fixtures_used(item):
            item.add_marker(pytest.mark.integration)


def test_database_url() -> str:
    """A DATABASE_URL for the database pytest-django set up (so subprocesses share it)."""
    sd = connection.settings_dict
    if sd["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{sd['NAME']}"
    user = quote(sd.get("USER") or "")
    password = quote(sd.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = sd.get("HOST") or "127.0.0.1"
    port = sd.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{sd['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        PORTAL_DATA_DIR=str(settings.DATA_DIR),
        FIELD_ENCRYPTION_KEY=",".join(
            settings.FIELD_ENCRYPTION_KEY
            if isinstance(settings.FIELD_ENCRYPTION_KEY, list)
            else [settings.FIELD_ENCRYPTION_KEY]
        ),
        SECRET_KEY=settings.SECRET_KEY,
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


class WorkerProcess:
    """A real `celery worker` subprocess consuming this test process's broker and database."""

    def __init__(self, queues: str | None, concurrency: int, extra_env: dict[str, str]) -> None:
        self.log_path = Path(settings.DATA_DIR) / f"worker-{uuid.uuid4().hex[:8]}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                *(["-Q", queues] if queues else []),
                "-c",
                str(concurrency),
                "-P",
                "prefork" if concurrency > 1 else "solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"test-{uuid.uuid4().hex[:8]}@%h",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=subprocess_env(**extra_env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "ready." in self.log_path.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("The Celery worker did not start:\n" + self.log_path.read_text())

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """Kill -9: a crash, not a shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture
def celery_worker_process(
    transactional_db: None,
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes: ``start(queues="default,signing,fleet", concurrency=1)``.

    ``queues=None`` starts the worker without ``-Q``, as the README's plain command does.

    Tests using it must commit their data (they get ``transactional_db``).
    """
    workers: list[WorkerProcess] = []

    def start(
        queues: str | None = "default,signing,fleet", concurrency: int = 1, **extra_env: str
    ) -> WorkerProcess:
        worker = WorkerProcess(queues, concurrency, extra_env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> object:
    """Poll until ``predicate()`` is truthy; fail the test with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"Timed out after {timeout:.0f} s waiting for {message}.")


@pytest.fixture
def staff_user(django_user_model):  # noqa: ANN001, ANN201
    return django_user_model.objects.create_user(
        username="staff", password="staff-pass-123", is_staff=True
    )


@pytest.fixture
def superuser(django_user_model):  # noqa: ANN001, ANN201
    return django_user_model.objects.create_superuser(
        username="admin", password="admin-pass-123", email="admin@example.com"
    )


def processes_with_data_dir(data_dir: str | Path) -> list[int]:
    """Pids whose environment names ``data_dir``: a demo and every child it started."""
    marker = f"PORTAL_DATA_DIR={data_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids
