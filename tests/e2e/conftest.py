"""Fixtures of the end-to-end tests: the demo as a subprocess with a database of its own.

In CI (``DATABASE_URL`` PostgreSQL, ``CELERY_BROKER_URL`` Redis) the demo uses those
services, with a fresh PostgreSQL database created and dropped around the test and a Redis
database number no pytest worker uses; otherwise it runs on the embedded defaults (SQLite
and the filesystem broker in the test's own data folder).
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import ROOT, processes_with_data_dir  # noqa: F401  (re-exported)

MOSQUITTO_PUB = shutil.which("mosquitto_pub")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
needs_mosquitto_clients = pytest.mark.skipif(
    not (MOSQUITTO_PUB and MOSQUITTO_SUB),
    reason="mosquitto_pub/mosquitto_sub are not installed (apt-get install mosquitto-clients).",
)
# What the demo's children may not inherit from the test process.
_DROP = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEY",
    "PORTAL_PRODUCTION",
    "AWS_ENDPOINT_URL",
    "CA_PASSWORD",
    "DEVICE_CERT_PASSWORD",
}


def _own_redis_url(url: str) -> str:
    """The same Redis server, a database number 8 away from this pytest worker's own."""
    match = re.match(r"^(redis://[^/]+)(?:/(\d+))?/?$", url)
    if not match:
        return url
    return f"{match.group(1)}/{(int(match.group(2) or 0) + 8) % 16}"


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for ``manage.py demo``: own data folder, own PG database / Redis number."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(PORTAL_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis://"):
        env["CELERY_BROKER_URL"] = _own_redis_url(broker)
    database_url = os.environ.get("DATABASE_URL", "")
    created = None
    if database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        import psycopg

        parts = urlsplit(database_url)
        created = f"e2e_demo_{uuid.uuid4().hex[:12]}"
        admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{created}"')
        env["DATABASE_URL"] = urlunsplit((parts.scheme, parts.netloc, f"/{created}", "", ""))
    try:
        yield env
    finally:
        if created is not None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')


def broker_args() -> list[str]:
    """The machine's Mosquitto behind the stand-in when CI says so, else the embedded one."""
    host = os.environ.get("TEST_MOSQUITTO_HOST")
    return ["--broker", host] if host else []


class DemoRun:
    """``manage.py demo`` as a subprocess whose output lines are collected as they come."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def scripted(
        cls,
        env: dict[str, str],
        *,
        prefix: str,
        stations: int,
        timeout: int,
        keep_running: bool = False,
    ) -> DemoRun:
        """``manage.py demo --scripted`` with ``stations`` stations named ``prefix…``, on the
        broker :func:`broker_args` chooses; ``keep_running`` leaves it up after the chain."""
        return cls(
            env,
            "--scripted",
            *(["--keep-running"] if keep_running else []),
            "--stations",
            str(stations),
            "--timeout",
            str(timeout),
            "--station-prefix",
            prefix,
            *broker_args(),
        )

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern``; fail when the demo ends without it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                match = regex.search(self.lines[seen])
                seen += 1
                if match:
                    return match
            if (
                self.proc.poll() is not None
                and not self._reader.is_alive()
                and seen >= len(self.lines)
            ):
                break
            time.sleep(0.05)
        pytest.fail(f"The demo never printed /{pattern}/:\n{self.output[-4000:]}")

    def wait(self, timeout: float) -> int:
        self.proc.wait(timeout)
        self._reader.join(5)
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)

    def manage(self, *args: str, input_: str | None = None) -> str:
        """Another ``manage.py`` command on the demo's database (as staff would run it)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            input=input_,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


def heartbeat_subscriber(found: re.Match[str], prefix: str) -> Subscriber:
    """Every station's heartbeat (QoS 0) on the broker behind the stand-in whose start line
    ``found`` matched (its ``host`` and ``bport`` groups)."""
    return Subscriber(
        "-h", found["host"], "-p", found["bport"], "-q", "0", "-i", f"{prefix}watcher",
        "-t", "things/+/heartbeat",
    )  # fmt: skip


class Subscriber:
    """``mosquitto_sub -v`` in the background; its "topic payload" lines are collected.

    Its output goes to a pseudo-terminal: to a pipe, mosquitto_sub's stdio would buffer the
    lines until it exits.
    """

    def __init__(self, *args: str) -> None:
        assert MOSQUITTO_SUB is not None
        self.lines: list[str] = []
        self._master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # keep "\n" line ends as they are
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(
            [MOSQUITTO_SUB, "-v", *args], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO once the process has closed the terminal
                break
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace").rstrip("\r") for line in complete)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._reader.join(5)
        os.close(self._master)
