"""Benchmark: N stations from "fleet install" to all connected, through the local AWS stand-in.

    python benchmarks/fleet_onboarding.py [--stations 1000] [--web-workers 2] [--celery 2]

What runs (every piece real, nothing stubbed):

* the portal as a real server process (gunicorn, gthread workers of one thread, DEBUG off);
* a real Celery worker (queues default, signing, fleet) and beat (database scheduler);
* the local AWS IoT stand-in (``python -m localaws``, its JITP limiter OFF) in front of a
  private Mosquitto (or the embedded broker when Mosquitto is not installed);
* N station agents (``fleet_agent.Agent``) in this process, each with its own state folder.

Database: ``DATABASE_URL`` when set (PostgreSQL recommended: use a dedicated database, the
benchmark refuses to touch one that already holds stations unless ``--reset``, which empties
it), else a fresh SQLite file. Broker: ``CELERY_BROKER_URL`` when set, else the filesystem
broker in the run's temp folder.

Steps: JITP setup through the worker (not timed), a signing profile, N stations whose agents
start and report in. Timed from here: the fleet install is created and started exactly as the
admin action does; the script approves what is pending in bulk, as staff would from the queue
(``onboarding_requests_approve``, the service behind the admin action and ``approve_requests``),
until every request is approved; the run ends when the install's job has finished (every row
connected in the portal's view).

It prints stations/s overall and for the portal side, the time split per phase taken from the
database rows (request created / issued, row delivered / connected) and the agents' own state
(certificate fetched, first TLS connect, MQTT connected), and the peak RSS of the portal and
worker processes (psutil when installed, else /proc's VmHWM).

One file on purpose: anyone can rerun it with one command, with no helper modules to find.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.demo import (  # noqa: E402
    QUIET_WORKER,
    celery_beat_argv,
    celery_worker_argv,
    localaws_argv,
)

CA_PASSWORD = "bench-ca-password-1"
DEVICE_PASSWORD = "bench-device-password-1"
MOSQUITTO = "/usr/sbin/mosquitto"


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_children(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        kids = [int(p) for p in text.split()]
        out.extend(kids)
        todo.extend(kids)
    return out


def peak_rss_mib(pid: int) -> dict[int, float]:
    """Peak resident set size per process of the tree rooted at ``pid``, in MiB."""
    pids = [pid, *proc_children(pid)]
    result: dict[int, float] = {}
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        psutil = None
    for p in pids:
        try:
            if psutil is not None:
                info = psutil.Process(p).memory_full_info()
                peak = getattr(info, "peak_wset", None) or 0
                if not peak:  # Linux: psutil has no peak; VmHWM below
                    raise AttributeError
                result[p] = peak / 2**20
                continue
        except Exception:  # noqa: BLE001, S110 - fall back to /proc
            pass
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    result[p] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return result


class Child:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for_text(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(
            f"{self.name} did not start; see {self.log_path}:\n"
            + self.log_path.read_text(errors="replace")[-3000:]
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def start_localaws(base: Path, env: dict[str, str], broker: str) -> tuple[Child, dict[str, str]]:
    child = Child(
        "localaws",
        localaws_argv(
            state_dir=base / "aws",
            options=("--jitp-rate", "0", "--broker", broker, "--create-role", "bench-jitp"),
        ),
        env,
        base / "logs",
    )
    child.wait_for_text("JITP_ROLE_ARN=", 60)
    values = {}
    for line in child.log_path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            values[key] = value.strip()
    return child, values


def start_mosquitto(base: Path, env: dict[str, str]) -> tuple[Child, str]:
    port = free_port()
    conf = base / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_connections -1\nmax_queued_messages 1000\n"
    )
    child = Child("mosquitto", [MOSQUITTO, "-c", str(conf), "-v"], env, base / "logs")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return child, f"127.0.0.1:{port}"
        time.sleep(0.05)
    raise SystemExit(f"mosquitto did not start; see {child.log_path}")


def setup_jitp_and_profile(aws: dict[str, str], *, name: str, worker_log: Path) -> tuple[Any, Any]:
    """A staff user, JITP set up through the worker (CA ``<name>-ca``), a signing profile."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from provisioning.aws.services import aws_service_update
    from provisioning.jitp import jitp_settings_update, jitp_setup_start
    from provisioning.models import AccessKey, Job
    from signing.models import CertificateAuthority, SigningProfile
    from signing.services import signing_profile_save

    staff = get_user_model().objects.create_user(f"{name}-staff", password=None, is_staff=True)
    aws_service_update(enabled=True, region="eu-west-1")
    key = AccessKey.objects.create(
        access_key_id=f"AKIA{name.upper():0<16}"[:20],
        secret="b" * 40,
        store_for="1d",
        purge_at=timezone.now() + timedelta(days=1),
    )
    jitp_settings_update(
        access_key=key,
        role_arn=aws["JITP_ROLE_ARN"],
        ca_source="generate",
        ca_alias=f"{name}-ca",
        ca_password=CA_PASSWORD,
        ca_dn=f"CN={name.title()} Fleet CA,O=ACME,C=DE",
    )
    job = jitp_setup_start(actor=staff)
    deadline = time.monotonic() + 120
    while not Job.objects.get(pk=job.pk).is_finished:
        if time.monotonic() > deadline:
            raise SystemExit(f"The JITP setup job did not finish; see {worker_log}.")
        time.sleep(0.5)
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        raise SystemExit(f"JITP setup failed: {job.result}")
    ca = CertificateAuthority.objects.get(alias=f"{name}-ca")
    profile = SigningProfile(name=name, ca=ca, country="DE", organization="ACME")
    signing_profile_save(profile=profile, ca_password=CA_PASSWORD, actor=staff)
    return staff, profile


def start_agents(
    names: list[str],
    *,
    base: Path,
    portal: str,
    tokens: dict[str, str],
    aws: dict[str, str],
    poll_interval: float,
    request_poll_max: float,
    within: float,
    started: list[Any],
) -> None:
    """Start one agent per station name (state under ``base``/stations) into ``started``,
    then wait until every station has reported in (SystemExit after ``within`` seconds)."""
    from devices.models import Station
    from fleet_agent.agent import Agent
    from fleet_agent.config import AgentOptions

    for name in names:
        agent = Agent(
            AgentOptions(
                state_dir=base / "stations" / name,
                portal=portal,
                token=tokens[name],
                broker_ca=aws["BROKER_CA"],
                connect_host=f"127.0.0.1:{aws['MQTT_PORT']}",
                poll_interval=poll_interval,
                request_poll_max=request_poll_max,
                portal_retry_max=5.0,
                reconnect_max=5.0,
                stable_after=5.0,
            )
        )
        agent.start()
        started.append(agent)
    deadline = time.monotonic() + within
    while Station.objects.filter(last_seen_at__isnull=False).count() < len(names):
        if time.monotonic() > deadline:
            raise SystemExit(f"Not every station reported in within {within:g} s.")
        time.sleep(0.5)


# ------------------------------------------------------------------ agent timestamps

EVENTS: dict[str, dict[str, float]] = {}
_EVENTS_LOCK = threading.Lock()


def instrument_agents() -> None:
    """Record, per station, when each device status is first reached and the first connect."""
    from fleet_agent.device import DeviceWorker

    set_status = DeviceWorker._set_status
    connect = DeviceWorker._connect

    def _set_status(self: Any, status: str, error: str | None = None) -> None:
        with _EVENTS_LOCK:
            EVENTS.setdefault(self.agent.label, {}).setdefault(status, time.time())
        set_status(self, status, error)

    def _connect(self: Any) -> None:
        with _EVENTS_LOCK:
            EVENTS.setdefault(self.agent.label, {}).setdefault("first_connect", time.time())
        connect(self)

    DeviceWorker._set_status = _set_status  # type: ignore[method-assign]
    DeviceWorker._connect = _connect  # type: ignore[method-assign]


# ------------------------------------------------------------------ report helpers


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"median {statistics.median(values):6.2f} s, p95 {p95:6.2f} s, max {values[-1]:6.2f} s"


def ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


@contextlib.contextmanager
def load_sampler() -> Iterator[list[float]]:
    samples: list[float] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(1.0):
            samples.append(os.getloadavg()[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(2)


# ------------------------------------------------------------------ main


def main() -> int:  # noqa: C901, PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--web-threads", type=int, default=1, help="threads per web worker")
    parser.add_argument("--celery", type=int, default=2, help="Celery worker processes")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=30.0,
        help="agents' config/state poll interval (s); 30 = the portal default",
    )
    parser.add_argument(
        "--request-poll-max",
        type=float,
        default=15.0,
        help="agents' cap on the onboarding-request poll backoff (s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="fleet install cap on stations in flight (default: all stations)",
    )
    parser.add_argument(
        "--broker",
        default="auto",
        help="MQTT broker behind the stand-in: auto (a private Mosquitto when "
        "installed, else embedded), embedded, or HOST:PORT",
    )
    parser.add_argument("--timeout", type=float, default=900, help="give up after (s)")
    parser.add_argument(
        "--reset",
        action="store_true",
        help="empty a DATABASE_URL database that already holds stations",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    if args.stations < 1:
        parser.error("--stations must be at least 1")

    # SIGTERM (timeout, CI) unwinds like Ctrl-C so the child processes are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="fleet-onboarding-bench-"))
    (base / "logs").mkdir()
    data_dir = base / "data"
    data_dir.mkdir()
    env_vars = {
        "PORTAL_DATA_DIR": str(data_dir),
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
        "STATION_ONLINE_SECONDS": "600",
    }
    os.environ.update(env_vars)
    sqlite = not os.environ.get("DATABASE_URL")
    children: list[Child] = []
    agents: list[Any] = []
    try:
        # ---- Django in this process: rows, the approval service, the timestamps.
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        from devices.models import MqttDevice, Station

        if Station.objects.exists():
            if not args.reset:
                raise SystemExit(
                    "The database already holds stations; give --reset to empty "
                    "it, or point DATABASE_URL at a dedicated database."
                )
            call_command("flush", interactive=False, verbosity=0)
            call_command("migrate", verbosity=0)
        child_env = dict(os.environ)
        child_env["FIELD_ENCRYPTION_KEY"] = ",".join(
            settings.FIELD_ENCRYPTION_KEY
            if isinstance(settings.FIELD_ENCRYPTION_KEY, list)
            else [settings.FIELD_ENCRYPTION_KEY]
        )
        child_env["SECRET_KEY"] = settings.SECRET_KEY

        # ---- The stand-in and its broker.
        broker = args.broker
        if broker == "auto":
            broker = "embedded"
            if Path(MOSQUITTO).exists():
                mosq, broker = start_mosquitto(base, child_env)
                children.append(mosq)
        aws_child, aws = start_localaws(base, child_env, broker)
        children.append(aws_child)
        settings.AWS_ENDPOINT_URL = child_env["AWS_ENDPOINT_URL"] = aws["AWS_ENDPOINT_URL"]

        # ---- Portal and worker processes.
        port = free_port()
        web = Child(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "portal.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                str(1 if sqlite else args.web_workers),
                "-k",
                "gthread",
                "--threads",
                str(args.web_threads),
                "--backlog",
                "2048",
                "--timeout",
                "120",
            ],
            child_env,
            base / "logs",
        )
        celery = Child(
            "celery",
            celery_worker_argv(
                name=f"bench-{os.getpid()}@%h",
                concurrency=args.celery,
                loglevel="WARNING",
                options=("-P", "prefork" if args.celery > 1 else "solo", *QUIET_WORKER),
            ),
            child_env,
            base / "logs",
        )
        # Beat with the database scheduler, as production runs it: the sweepers re-send
        # what a lost message left (approved requests, unstarted installs, set-up jobs).
        beat = Child(
            "beat",
            celery_beat_argv(loglevel="WARNING"),
            child_env,
            base / "logs",
        )
        children += [web, celery, beat]
        web.wait_for_text("Booting worker", 60)
        portal_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        time.sleep(3)  # the worker process has no "ready" line at WARNING; give it a moment

        # ---- Setup (not timed): JITP through the worker, a signing profile, the stations.
        from provisioning.fleet import fleet_install_create, fleet_install_start
        from provisioning.models import FleetInstallStation, Job
        from signing.models import OnboardingRequest
        from signing.services import onboarding_requests_approve

        staff, profile = setup_jitp_and_profile(aws, name="bench", worker_log=celery.log_path)
        endpoint = aws["MQTT_ENDPOINT"]

        from devices.station_services import stations_import_csv

        names = [f"st-{i:05d}" for i in range(args.stations)]
        created = stations_import_csv(data="name\n" + "\n".join(names) + "\n", actor=staff)
        tokens = {station.name: token for station, token in created}
        instrument_agents()
        import logging

        logging.getLogger("fleet_agent").setLevel(logging.CRITICAL)
        print(
            f"setup done: JITP endpoint {endpoint}, {len(tokens)} stations; starting agents",
            flush=True,
        )
        start_agents(
            names,
            base=base,
            portal=portal_url,
            tokens=tokens,
            aws=aws,
            poll_interval=args.poll_interval,
            request_poll_max=args.request_poll_max,
            within=300,
            started=agents,
        )
        print(
            f"{args.stations} agents running and reported in; load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )

        # ---- Timed: fleet install -> bulk approvals -> all connected.
        with load_sampler() as loads:
            t0 = time.time()
            install = fleet_install_create(
                device_name="aws",
                profile=profile,
                endpoint=endpoint,
                port=8883,
                key_password=DEVICE_PASSWORD,
                comment="benchmark",
                stations=list(Station.objects.filter(name__in=names)),
                concurrency=args.concurrency or args.stations,
                actor=staff,
            )
            fleet_install_start(install=install)  # on_commit: autocommit here, so at once
            approvals: list[tuple[float, int]] = []
            deadline = time.monotonic() + args.timeout
            job_id = install.job_id
            while True:
                ids = onboarding_requests_approve(ids=None, actor=staff)
                if ids:
                    approvals.append((time.time(), len(ids)))
                if Job.objects.filter(pk=job_id, finished_at__isnull=False).exists():
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("Timed out; see the logs in " + str(base / "logs"))
                time.sleep(1.0)
            t_end = time.time()
        install.job.refresh_from_db()

        # ---- Figures.
        rss = {
            "portal (gunicorn)": peak_rss_mib(web.proc.pid),
            "worker (celery)": peak_rss_mib(celery.proc.pid),
        }
        requests = {
            r["device__station__name"]: r
            for r in OnboardingRequest.objects.filter(is_renewal=False).values(
                "device__station__name", "created_at", "decided_at", "issued_at"
            )
        }
        rows = {
            r["station__name"]: r
            for r in FleetInstallStation.objects.filter(install=install).values(
                "station__name", "dispatched_at", "delivered_at", "connected_at"
            )
        }
        phases: dict[str, list[float]] = {
            k: []
            for k in (
                "install -> placed",
                "placed -> config fetched",
                "config fetched -> CSR submitted",
                "CSR submitted -> approved",
                "approved -> signed",
                "signed -> fetched",
                "fetched -> first connect",
                "first connect -> connected",
                "connected -> portal sees it",
            )
        }
        for name in names:
            req, row, ev = requests.get(name), rows.get(name), EVENTS.get(name, {})
            if not (req and row):
                continue
            points = [
                t0,
                ts(row["dispatched_at"]),
                ts(row["delivered_at"]),
                ts(req["created_at"]),
                ts(req["decided_at"]),
                ts(req["issued_at"]),
                ev.get("certificate_issued"),
                ev.get("first_connect"),
                ev.get("connected"),
                ts(row["connected_at"]),
            ]
            for label, (a, b) in zip(phases, zip(points, points[1:], strict=False), strict=True):
                if a is not None and b is not None:
                    phases[label].append(b - a)

        def span(values: list[float | None]) -> tuple[float, float]:
            clean = [v for v in values if v is not None]
            return min(clean), max(clean)

        n = args.stations
        total = t_end - t0
        first_approval = approvals[0][0] if approvals else t0
        signed_first, signed_last = span([ts(r["issued_at"]) for r in requests.values()])
        placed_first, placed_last = span([ts(r["dispatched_at"]) for r in rows.values()])
        csr_first, csr_last = span([ts(r["created_at"]) for r in requests.values()])
        conn_last = max(ts(r["connected_at"]) or 0 for r in rows.values())
        agent_conn_last = max((ev.get("connected") or 0) for ev in EVENTS.values())
        # Portal side: the stretches where stations wait for the portal itself - placing the
        # device in every desired config (install -> last placed) and signing what staff
        # approved (per bulk approval: approval -> last certificate of that batch issued,
        # overlapping stretches merged) - not the agents' poll pacing, key generation, the
        # wait for staff or the MQTT connection.
        placing = placed_last - t0
        batches: dict[float, float] = {}
        for r in requests.values():
            if r["decided_at"] is not None and r["issued_at"] is not None:
                d = ts(r["decided_at"])
                batches[d] = max(batches.get(d, d), ts(r["issued_at"]))
        signing = 0.0
        cursor = 0.0
        for start, end in sorted(batches.items()):
            start = max(start, cursor)
            if end > start:
                signing += end - start
                cursor = end
        portal_side = placing + signing
        connected = MqttDevice.objects.filter(status=MqttDevice.Status.CONNECTED).count()
        vendor = connection.vendor
        print()
        print(f"Fleet onboarding benchmark, {n} stations, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(
            f"machine: {os.cpu_count()} CPUs, {platform_line()}; database {vendor}; broker "
            f"{settings.CELERY_BROKER_URL.split('://')[0]}; MQTT backend {broker}"
        )
        print(
            f"portal: gunicorn {1 if sqlite else args.web_workers} worker(s) x "
            f"{args.web_threads} threads; celery {args.celery} process(es); agents poll every "
            f"{args.poll_interval:g} s, request poll cap {args.request_poll_max:g} s"
        )
        print(f"job: {install.job.get_status_display()}: {install.job.result}")
        print(
            f"devices connected (portal): {connected}/{n}; agents connected: "
            f"{sum(1 for a in agents if a.all_connected())}/{n}"
        )
        print(
            f"load average during the run: min {min(loads or [0]):.1f}, "
            f"median {statistics.median(loads or [0]):.1f}, max {max(loads or [0]):.1f}"
        )
        print()
        print(
            f"overall: {n} stations from fleet install to all connected in {total:.1f} s "
            f"= {n / total:.1f} stations/s"
        )
        print(
            f"portal side: {portal_side:.2f} s = {n / portal_side:.1f} stations/s "
            f"(placing {placing:.2f} s + signing {signing:.2f} s)"
        )
        print(
            f"  signing: {n} certificates in {signing:.2f} s of signing = "
            f"{n / max(signing, 1e-9):.1f}/s (last issued {signed_last - first_approval:.1f} s "
            f"after the first approval); CSR intake {csr_first - t0:.1f} -> "
            f"{csr_last - t0:.1f} s after the install"
        )
        print(
            f"  approvals: {len(approvals)} bulk rounds "
            + ", ".join(f"+{c} at {t - t0:.1f} s" for t, c in approvals[:8])
            + (" ..." if len(approvals) > 8 else "")
        )
        print(
            f"  last agent connected at {agent_conn_last - t0:.1f} s, last row connected in "
            f"the portal at {conn_last - t0:.1f} s"
        )
        print()
        print("phase split per station:")
        for label, values in phases.items():
            print(f"  {label:32s} {spread(values)}")
        print()
        print("peak RSS:")
        for label, per in rss.items():
            parts = ", ".join(f"{v:.0f}" for v in sorted(per.values(), reverse=True))
            print(
                f"  {label:18s} max {max(per.values() or [0]):.0f} MiB per process "
                f"({len(per)} processes: {parts} MiB)"
            )
        print(
            f"AWS JITP comparison: at AWS's ~10 registrations/s, {n} stations need "
            f"{n / 10:.0f} s of JITP alone; the portal side needs {portal_side:.1f} s."
        )
        return 0 if install.job.status == Job.Status.SUCCEEDED else 1
    finally:
        for agent in agents:
            agent.stop(timeout=0)
        for child in reversed(children):
            child.stop()
        stop_by = time.monotonic() + 30  # agents blocked in an HTTP call end by its timeout
        for agent in agents:
            agent.join(max(0.0, stop_by - time.monotonic()))
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def platform_line() -> str:
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu or platform.processor()}, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
