"""Chaos run: N stations onboarding while processes die and connections are cut.

    DATABASE_URL=postgres://…/<dedicated db> python benchmarks/fleet_chaos.py [--stations 24]

What runs (every piece real): a private redis-server on a free port (the Celery broker),
gunicorn (2 workers, gthread), a Celery worker (prefork, 2 children), beat with the database
scheduler, the local AWS stand-in (with Mosquitto when installed), PostgreSQL, and N station
agents (``fleet_agent.Agent``) in this process. A fleet install is started as the admin does
and pending requests are approved in bulk every second, as staff would from the queue.

While it runs, one fault every ``--every`` seconds, in turn: SIGKILL a gunicorn worker,
SIGKILL a Celery worker child, SIGKILL redis-server and start it again empty, cut every
PostgreSQL connection (``pg_terminate_backend``). Faults go on for at least
``--chaos-seconds`` and until every station is connected.

End state it checks (exit 1 otherwise): every station connected, exactly one active
certificate per device, no request approved and unsigned for longer than one sweep period,
no 500 in gunicorn's access log or the agents' log. It prints the timings and the faults.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet_onboarding import (  # noqa: E402
    DEVICE_PASSWORD,
    MOSQUITTO,
    ROOT,
    Child,
    free_port,
    proc_children,
    setup_jitp_and_profile,
    start_agents,
    start_localaws,
    start_mosquitto,
)

# portal/schedules.py: the approval sweep runs every 30 s for requests handed out > 30 s ago.
SWEEP_PERIOD = 60
ACCESS_STATUS = re.compile(r'" (\d{3}) ')


class Redis:
    """redis-server on a fixed port; ``restart`` kills it (-9) and starts it again empty."""

    def __init__(self, port: int, env: dict[str, str], logdir: Path) -> None:
        self.port, self.env, self.logdir, self.starts = port, env, logdir, 0
        self.child = self._start()

    def _start(self) -> Child:
        self.starts += 1
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(self.port)]
        argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        child = Child(f"redis-{self.starts}", argv, self.env, self.logdir)
        child.wait_for_text("Ready to accept connections", 20)
        return child

    def restart(self, down_for: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.proc.pid, signal.SIGKILL)
        self.child.proc.wait(10)
        time.sleep(down_for)
        self.child = self._start()


def _db_retry(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a database call of this script; a cut connection is reopened and the call retried."""
    from django.db import InterfaceError, OperationalError, connection

    for attempt in range(20):
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError):
            connection.close()
            time.sleep(min(0.2 * (attempt + 1), 2))
    return fn(*args, **kwargs)


def main() -> int:  # noqa: C901, PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=24)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between faults")
    parser.add_argument(
        "--chaos-seconds", type=float, default=75.0, help="faults at least this long"
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="give up after (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        raise SystemExit("Set DATABASE_URL to a dedicated PostgreSQL database (it is emptied).")
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is not installed.")
    rng = random.Random(args.seed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="fleet-chaos-"))
    logs = base / "logs"
    logs.mkdir()
    (base / "data").mkdir()
    redis_port = free_port()
    os.environ.update(
        PORTAL_DATA_DIR=str(base / "data"),
        DEBUG="false",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
        STATION_ONLINE_SECONDS="600",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
    )
    children: list[Child] = []
    agents: list[Any] = []
    redis: Redis | None = None
    ok = False
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.db.models import Count, F, Max
        from django.utils import timezone

        call_command("flush", interactive=False, verbosity=0)
        call_command("migrate", verbosity=0)
        env = dict(os.environ)
        key = settings.FIELD_ENCRYPTION_KEY
        env["FIELD_ENCRYPTION_KEY"] = ",".join(key if isinstance(key, list) else [key])
        env["SECRET_KEY"] = settings.SECRET_KEY

        redis = Redis(redis_port, env, logs)
        broker = "embedded"
        if Path(MOSQUITTO).exists():
            mosq, broker = start_mosquitto(base, env)
            children.append(mosq)
        aws_child, aws = start_localaws(base, env, broker)
        children.append(aws_child)
        settings.AWS_ENDPOINT_URL = env["AWS_ENDPOINT_URL"] = aws["AWS_ENDPOINT_URL"]

        port = free_port()
        python = sys.executable
        web = Child(
            "gunicorn",
            [python, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"]
            + ["-k", "gthread", "--threads", "4", "--timeout", "60"]
            + ["--access-logfile", str(logs / "access.log")],
            env,
            logs,
        )
        worker = Child(
            "celery",
            [python, "-m", "celery", "-A", "portal", "worker", "-Q", "default,signing,fleet"]
            + ["-c", "2", "-P", "prefork", "--without-gossip", "--without-mingle"]
            + ["--without-heartbeat", "-l", "INFO", "-n", f"chaos-{os.getpid()}@%h"],
            env,
            logs,
        )
        beat = Child(
            "beat",
            [python, "-m", "celery", "-A", "portal", "beat", "-l", "INFO"]
            + ["-S", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile="],
            env,
            logs,
        )
        children += [web, worker, beat]
        web.wait_for_text("Booting worker", 60)
        worker.wait_for_text("ready.", 60)

        from devices.models import MqttDevice, Station
        from devices.station_services import stations_import_csv
        from provisioning.fleet import fleet_install_create, fleet_install_start
        from provisioning.models import FleetInstallStation
        from signing.models import (
            IssuedCertificate,
            OnboardingRequest,
        )
        from signing.services import onboarding_requests_approve

        staff, profile = setup_jitp_and_profile(aws, name="chaos", worker_log=worker.log_path)
        names = [f"chaos-{i:03d}" for i in range(args.stations)]
        created = stations_import_csv(data="name\n" + "\n".join(names) + "\n", actor=staff)
        tokens = {station.name: token for station, token in created}

        agent_log = logging.FileHandler(logs / "agents.log")
        agent_log.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logging.getLogger("fleet_agent").addHandler(agent_log)
        logging.getLogger("fleet_agent").setLevel(logging.INFO)
        logging.getLogger("fleet_agent").propagate = False
        start_agents(
            names,
            base=base,
            portal=f"http://127.0.0.1:{port}",
            tokens=tokens,
            aws=aws,
            poll_interval=5.0,
            request_poll_max=5.0,
            within=120,
            started=agents,
        )
        print(f"setup done: {args.stations} agents reported in; faults start", flush=True)

        # ---- Faults, in a thread of their own (its own database connection).
        faults: Counter[str] = Counter()
        stop_faults = threading.Event()

        def kill_child(child: Child, kind: str) -> None:
            kids = proc_children(child.proc.pid)
            direct = [p for p in kids if Path(f"/proc/{p}/stat").exists()]
            if direct:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(direct), signal.SIGKILL)
                faults[kind] += 1

        def cut_database() -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            connection.close()
            faults["postgres connections cut"] += 1

        def run_faults() -> None:
            assert redis is not None
            order = ["web", "worker", "redis", "postgres"]
            i = 0
            while not stop_faults.wait(args.every):
                kind = order[i % len(order)]
                i += 1
                try:
                    if kind == "web":
                        kill_child(web, "gunicorn worker SIGKILL")
                    elif kind == "worker":
                        kill_child(worker, "celery child SIGKILL")
                    elif kind == "redis":
                        redis.restart(down_for=2.0)
                        faults["redis SIGKILL, restarted empty"] += 1
                    else:
                        cut_database()
                except Exception as exc:  # noqa: BLE001 - report, keep the faults going
                    print(f"fault {kind} failed: {exc!r}", flush=True)

        t0 = time.time()
        chaos = threading.Thread(target=run_faults, daemon=True)
        chaos.start()
        install = _db_retry(
            fleet_install_create,
            device_name="aws",
            profile=profile,
            endpoint=aws["MQTT_ENDPOINT"],
            port=8883,
            key_password=DEVICE_PASSWORD,
            comment="chaos",
            stations=list(Station.objects.filter(name__in=names)),
            concurrency=args.stations,
            actor=staff,
        )
        _db_retry(fleet_install_start, install=install)
        deadline = time.monotonic() + args.timeout
        t_connected = None
        while True:
            _db_retry(onboarding_requests_approve, ids=None, actor=staff)
            done = _db_retry(
                lambda: FleetInstallStation.objects.filter(
                    install=install, status=FleetInstallStation.Status.CONNECTED
                ).count()
            )
            if done == args.stations and t_connected is None:
                t_connected = time.time()
            if t_connected is not None and time.time() - t0 >= args.chaos_seconds:
                break
            if time.monotonic() > deadline:
                print(f"timed out: {done} of {args.stations} connected", flush=True)
                break
            time.sleep(1.0)
        stop_faults.set()
        chaos.join(30)
        t_faults_end = time.time()
        connection.close()

        # ---- End state (after a last round: every process is up again).
        settle = time.monotonic() + SWEEP_PERIOD + 30
        while time.monotonic() < settle:
            pending = _db_retry(
                lambda: (
                    FleetInstallStation.objects.filter(install=install)
                    .exclude(status=FleetInstallStation.Status.CONNECTED)
                    .count()
                )
            )
            if pending == 0:
                break
            _db_retry(onboarding_requests_approve, ids=None, actor=staff)
            time.sleep(1.0)
        now = timezone.now()
        rows = Counter(
            FleetInstallStation.objects.filter(install=install).values_list("status", flat=True)
        )
        devices = MqttDevice.objects.filter(station__name__in=names, name="aws")
        connected_devices = devices.filter(status=MqttDevice.Status.CONNECTED).count()
        active = Counter(
            dict(
                IssuedCertificate.objects.filter(
                    device__in=devices, status=IssuedCertificate.Status.ACTIVE
                )
                .values("device_id")
                .annotate(n=Count("id"))
                .values_list("device_id", "n")
            )
        )
        stuck = OnboardingRequest.objects.filter(
            status=OnboardingRequest.Status.APPROVED,
            decided_at__lt=now - timedelta(seconds=SWEEP_PERIOD),
        ).count()
        lag = OnboardingRequest.objects.filter(issued_at__isnull=False).aggregate(
            m=Max(F("issued_at") - F("decided_at"))
        )["m"]
        statuses = Counter(
            m.group(1)
            for line in (logs / "access.log").read_text(errors="replace").splitlines()
            if (m := ACCESS_STATUS.search(line))
        )
        agent_500 = (logs / "agents.log").read_text(errors="replace").count("HTTP 500")
        checks = {
            "every station connected": rows.get(FleetInstallStation.Status.CONNECTED, 0)
            == args.stations
            and connected_devices == args.stations,
            "exactly one active certificate per device": len(active) == args.stations
            and set(active.values()) == {1},
            "no request stuck longer than one sweep period": stuck == 0,
            "no 500 from any door": statuses.get("500", 0) == 0 and agent_500 == 0,
        }
        print(f"stations: {args.stations}; install rows: {dict(rows)}")
        print(
            f"all connected after {t_connected - t0:.1f} s" if t_connected else "not all connected"
        )
        print(f"faults for {t_faults_end - t0:.1f} s, one every {args.every:g} s: {dict(faults)}")
        print(f"redis-server started {redis.starts} times")
        print(f"max approval -> issued: {lag.total_seconds():.1f} s" if lag else "nothing issued")
        print(f"HTTP statuses in gunicorn's access log: {dict(sorted(statuses.items()))}")
        print(f"'HTTP 500' in the agents' log: {agent_500}")
        for name, passed in checks.items():
            print(f"{'PASS' if passed else 'FAIL'}: {name}")
        ok = all(checks.values())
        print("CHAOS OK" if ok else f"CHAOS FAILED; logs in {logs}", flush=True)
        return 0 if ok else 1
    finally:
        for agent in agents:
            with contextlib.suppress(Exception):
                agent.stop(timeout=0)
        for child in reversed(children):
            child.stop()
        if redis is not None:
            redis.child.stop()
        if args.keep or not ok:
            print(f"kept {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
