"""The demo: run the whole product on one machine as child processes of one command.

``manage.py demo`` is a thin door onto :func:`run_demo`. The pieces are kept separate so that
later issues can add their own processes (the local AWS stand-in, simulated stations) to the
same :class:`ProcessGroup` without touching the web/worker/beat wiring:

- :class:`ProcessGroup` starts named children in their own sessions (so a terminal's Ctrl-C
  reaches only the parent), watches them, and stops them all (SIGTERM, then SIGKILL).
- :func:`ensure_admin` creates or updates the ``admin`` superuser with a fresh password.
- :func:`portal_processes` lists the web server, the Celery worker and beat.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN_USERNAME = "admin"


@dataclass
class Child:
    """One named child process and where its output goes."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


@dataclass
class ProcessGroup:
    """Children that live and die together: if one exits, the group is stopped.

    Output of each child goes to ``log_dir/<name>.log`` (or to the parent's stdout when
    ``log_dir`` is None), so the demo's own stdout stays readable.
    """

    log_dir: Path | None = None
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name=name, argv=list(argv), env=env)
        stdout: Any = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            child.log = (self.log_dir / f"{name}.log").open("ab")
            stdout = child.log
        child.proc = subprocess.Popen(
            child.argv,
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.children.append(child)
        return child

    def exited(self) -> Child | None:
        """The first child that has exited, if any."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child (warm shutdown), then SIGKILL what is left of its process group."""
        for child in reversed(self.children):
            # Only the child itself: Celery's main process shuts its pool down warmly.
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            assert child.proc is not None
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.proc.wait(5)
        for child in self.children:
            _signal_group(child, signal.SIGKILL)  # stray grandchildren (prefork pool)
            if child.log is not None:
                child.log.close()


def _signal_group(child: Child, signum: int) -> None:
    if child.proc is None:
        return
    try:
        os.killpg(child.proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, timeout: float, alive: Callable[[], bool]) -> bool:
    """Poll ``url`` until it answers (any HTTP status) or ``alive()`` turns False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local URL
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.2)
    return False


def ensure_admin() -> str:
    """Create or update the ``admin`` superuser with a freshly generated password; return it."""
    from django.contrib.auth import get_user_model

    password = secrets.token_urlsafe(12)
    User = get_user_model()
    user, _ = User.objects.get_or_create(
        **{User.USERNAME_FIELD: ADMIN_USERNAME}, defaults={"email": "admin@localhost"}
    )
    user.is_staff = True
    user.is_superuser = True
    user.is_active = True
    user.set_password(password)
    user.save()
    return password


# Worker options for a lone worker: no gossip, mingle or heartbeat events with other workers.
QUIET_WORKER = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def celery_worker_argv(
    *,
    name: str,
    concurrency: int,
    loglevel: str,
    queues: str = "default,signing,fleet",
    options: Sequence[str] = (),
) -> list[str]:
    """A Celery worker of the portal on ``queues`` (node ``name``), with worker ``options``."""
    return [
        sys.executable,
        *("-m", "celery", "-A", "portal", "worker"),
        *("-Q", queues, "-c", str(concurrency), *options),
        *("-l", loglevel, "-n", name),
    ]


def celery_beat_argv(*, loglevel: str) -> list[str]:
    """Celery beat of the portal with the database scheduler (django-celery-beat)."""
    return [
        sys.executable,
        *("-m", "celery", "-A", "portal", "beat", "-l", loglevel),
        *("-S", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile="),
    ]


def localaws_argv(*, state_dir: Path, mqtt_port: int = 0, options: Sequence[str] = ()) -> list[str]:
    """The local AWS stand-in on a free API port and ``mqtt_port`` (0: a free one)."""
    return [
        sys.executable,
        *("-m", "localaws", "--port", "0", "--mqtt-port", str(mqtt_port)),
        *("--state-dir", str(state_dir), *options),
    ]


def portal_processes(*, host: str, port: int) -> list[tuple[str, list[str], dict[str, str]]]:
    """The web server, a Celery worker on every queue, and beat with the database scheduler,
    each with what its environment changes.

    runserver keeps a thread per keep-alive client: on a server database a persistent
    connection per thread would hold one connection per agent, so the web server has none.
    """
    return [
        (
            "web",
            [sys.executable, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
            {"DB_CONN_MAX_AGE": "0"},
        ),
        (
            "worker",
            celery_worker_argv(name=f"demo-{os.getpid()}@%h", concurrency=2, loglevel="INFO"),
            {},
        ),
        ("beat", celery_beat_argv(loglevel="INFO"), {}),
    ]


class _Stop(BaseException):
    """Ctrl-C / SIGTERM: a BaseException so that no ``except Exception`` in a step swallows it."""


@dataclass
class DemoOptions:
    """What ``manage.py demo`` was asked for (see its --help)."""

    host: str = "127.0.0.1"
    port: int = 8000
    stations: int = 0
    scripted: bool = False
    timeout: float = 300.0
    broker: str = "embedded"
    mqtt_port: int | None = None
    station_prefix: str = "demo-st-"
    keep_running: bool = False


def _mqtt_port(options: DemoOptions) -> int:
    """8883 (the form's default) for a person when it is free, else any free port."""
    if options.mqtt_port is not None:
        return options.mqtt_port
    if options.scripted:
        return 0
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 8883))
        return 8883
    except OSError:
        return 0


def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    write: Callable[[str], None] = print,
    extra: Callable[[ProcessGroup], None] | None = None,
    options: DemoOptions | None = None,
    error: Callable[[str], None] | None = None,
) -> int:
    """Run the demo until Ctrl-C/SIGTERM (or, scripted, until every station is connected).

    Order: migrate and the admin; the local AWS stand-in (its endpoint goes into every other
    child's environment); the demo data; web, worker and beat; one agent per station. Then
    either print the steps to click and wait, or perform them (``options.scripted``).
    ``extra`` lets later features add their own children to the group before it is watched;
    ``error`` receives the failure sentence (default: ``write``).
    """
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from portal import demo_chain as chain
    from portal import demo_script

    options = options or DemoOptions(host=host, port=port)
    host = options.host
    port = options.port
    t0 = time.monotonic()
    started_at = timezone.now()
    if port == 0:
        port = free_port(host)
    data_dir = Path(settings.DATA_DIR)
    group = ProcessGroup(log_dir=data_dir / "demo-logs")

    def on_signal(signum: int, frame: object) -> None:
        raise _Stop

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        chain.check_installed()
        call_command("migrate", interactive=False, verbosity=0)
        password = ensure_admin()
        write(f"[{time.monotonic() - t0:6.1f} s] Database migrated, admin ready")
        secrets_path = data_dir / "demo" / "secrets.env"
        demo_secrets = chain.demo_secrets(secrets_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("AWS_ENDPOINT_URL", None)
        # The demo's web server is runserver on 127.0.0.1: debug on, so that it serves the
        # admin's static files, unless the caller chose otherwise.
        env.setdefault("DEBUG", "true")
        standin = chain.standin_start(
            group,
            state_dir=data_dir / "demo" / "localaws",
            broker=options.broker,
            mqtt_port=_mqtt_port(options),
            env=env,
        )
        write(
            f"[{time.monotonic() - t0:6.1f} s] Local AWS stand-in up: control plane "
            f"{standin.endpoint_url}, MQTT {standin.mqtt_endpoint} on 127.0.0.1:"
            f"{standin.mqtt_port}, broker behind it {standin.broker}"
        )
        write(f"Broker CA: {standin.broker_ca}")
        # This process runs the scripted steps' AWS calls itself (setup_jitp in the foreground).
        settings.AWS_ENDPOINT_URL = standin.endpoint_url
        env["AWS_ENDPOINT_URL"] = standin.endpoint_url
        chain.demo_prepare_aws(standin=standin, secrets_=demo_secrets)
        stations = chain.demo_stations(
            count=options.stations,
            prefix=options.station_prefix,
            root=data_dir / "demo" / "stations",
        )
        write(
            f"[{time.monotonic() - t0:6.1f} s] Demo data ready: access key "
            f"{chain.DEMO_ACCESS_KEY_ID}, AWS service on ({chain.DEMO_REGION}), "
            f"{len(stations)} station(s)"
        )
        for name, argv, changes in portal_processes(host=host, port=port):
            group.start(name, argv, env={**env, **changes})
        if extra is not None:
            extra(group)
        url = f"http://{host}:{port}/admin/"
        if not wait_http(url, timeout=60, alive=lambda: group.exited() is None):
            write(f"The web server did not start; see {group.log_dir}/web.log.")
            return 1
        chain.agents_start(
            group, stations=stations, portal_url=f"http://{host}:{port}", standin=standin, env=env
        )
        write(
            f"[{time.monotonic() - t0:6.1f} s] Web server, worker, beat and "
            f"{len(stations)} agent(s) started"
        )
        write(f"Admin:    {url}")
        write(f"User:     {ADMIN_USERNAME}")
        write(f"Password: {password}")
        write(f"Logs:     {group.log_dir}")
        if options.scripted:
            code = demo_script.run_scripted(
                standin=standin,
                stations=stations,
                secrets_=demo_secrets,
                write=write,
                timeout=options.timeout,
                started_at=started_at,
                t0=t0,
                dead=lambda: getattr(group.exited(), "name", None),
            )
            if not options.keep_running:
                return code
        else:
            for line in demo_script.click_steps(
                standin=standin, secrets_path=secrets_path, stations=stations, url=url
            ):
                write(line)
        write("Running. Press Ctrl-C to stop.")
        while True:
            dead = group.exited()
            if dead is not None:
                write(
                    f"The {dead.name} process stopped unexpectedly (exit code "
                    f"{dead.proc.returncode if dead.proc else '?'}); see "
                    f"{group.log_dir}/{dead.name}.log. Stopping the demo."
                )
                code = 1
                break
            time.sleep(0.5)
    except _Stop:
        write("Stopping…")
    except chain.DemoError as exc:
        dead = group.exited()
        hint = f" See {group.log_dir}/{dead.name}.log." if dead is not None else ""
        (error or write)(f"{exc}{hint}")
        code = 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        group.stop()
        write("Stopped.")
    return code
