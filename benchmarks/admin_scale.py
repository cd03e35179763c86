"""The admin and the agent protocol at fleet scale: 10,000 stations / 100,000 certificates.

Usage (PostgreSQL; the database is migrated and filled once, then reused):

    createdb -h 127.0.0.1 -U postgres admin_scale
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/admin_scale \\
    python benchmarks/admin_scale.py [--stations 10000] [--certs-per-station 10] [--runs 20] \\
        [--serve]   # also: gunicorn (2 workers) + wrk for the agent's 304 poll rate
        [--server gunicorn|granian] [--web-workers 2] [--web-threads 1] [--only all|admin|agent]

It builds the data with bulk_create (tests/portal/fleet_builder.py), then prints, through
Django's test Client logged in as a superuser: p50/p95 latency and the SQL query count of
every changelist (at 20 and at 100 rows per page: the count must not change) and of the
dashboard; the certificate search by serial, fingerprint and CN; the agent's config poll
(304 path) and a repeated state report, with the number of writes each makes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

TICK = os.sysconf("SC_CLK_TCK")
CPU_MS: dict[str, float] = {}


def _cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (from /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _measure(client, url: str, runs: int, **extra) -> tuple[float, float, int, int, int]:  # noqa: ANN001
    """(p50 ms, p95 ms, queries, writes, status) of ``runs`` GETs after one warm-up; the CPU
    time per request (this process plus its PostgreSQL backend) goes to CPU_MS[url]."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url, **extra)
    backend = [_backend_pid()] if connection.vendor == "postgresql" else []
    cpu0, db0 = time.process_time(), _cpu_of(backend)
    times = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.get(url, **extra)
            times.append(time.perf_counter() - start)
    CPU_MS[url] = (time.process_time() - cpu0 + _cpu_of(backend) - db0) * 1000 / runs
    sql = [q["sql"].lstrip().upper() for q in ctx.captured_queries]
    writes = sum(
        1 for q in sql if q.startswith(("INSERT", "UPDATE", "DELETE")) or "FOR UPDATE" in q
    )
    return (*_ms(times), len(sql), writes, response.status_code)


def build(stations: int, per_station: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from devices.models import Station
    from tests.devices.factories import make_profile
    from tests.portal.fleet_builder import build_fleet

    user_model = get_user_model()
    if not user_model.objects.filter(username="bench-admin").exists():
        user_model.objects.create_superuser("bench-admin", "bench@example.com", "bench-pass-1")
    have = Station.objects.filter(name__startswith="b").count()
    if have >= stations:
        print(f"data: {have} stations already present, reused")
        return
    profile, now, chunk = make_profile("bench"), timezone.now(), 1000
    start = time.perf_counter()
    for i in range(have // chunk, stations // chunk):
        build_fleet(
            stations=chunk,
            certs_per_station=per_station,
            profile=profile,
            now=now,
            prefix=f"b{i:02d}",
            spacing_days=36,  # ten certificates over a year: one renewal every ~5 weeks
        )
        print(f"  built {(i + 1) * chunk} stations", flush=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    print(f"data: built in {time.perf_counter() - start:.0f} s")


def changelists(client, runs: int) -> None:  # noqa: ANN001
    from django.contrib import admin
    from django.urls import reverse

    print(
        "\n| page | p50 ms | p95 ms | CPU ms | queries (20/page) | queries (100/page) |"
        "\n|---|---|---|---|---|---|"
    )
    p50, p95, queries, _, status = _measure(client, "/admin/", runs)
    cpu = CPU_MS["/admin/"]
    print(f"| dashboard (/admin/) | {p50:.0f} | {p95:.0f} | {cpu:.0f} | {queries} | {queries} |")
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda i: i[0]._meta.label):
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        before = model_admin.list_per_page
        try:
            model_admin.list_per_page = 20
            q20 = _measure(client, url, 1)[2]
            model_admin.list_per_page = 100
            p50, p95, q100, _, status = _measure(client, url, runs)
        finally:
            model_admin.list_per_page = before
        flag = "" if status == 200 else f" (HTTP {status})"
        cpu = CPU_MS[url]
        print(f"| {model._meta.label}{flag} | {p50:.0f} | {p95:.0f} | {cpu:.0f} | {q20} | {q100} |")


def _search_rows(term: str) -> int:
    """How many certificates the admin's search finds for ``term`` (its own search code)."""
    from django.contrib import admin

    from signing.models import IssuedCertificate

    model_admin = admin.site.get_model_admin(IssuedCertificate)
    found, _ = model_admin.get_search_results(None, IssuedCertificate.objects.all(), term)
    return int(found.count())


def searches(client, runs: int) -> None:  # noqa: ANN001
    from signing.models import IssuedCertificate

    cert = IssuedCertificate.objects.order_by("pk")[IssuedCertificate.objects.count() // 2]
    url = "/admin/signing/issuedcertificate/?q="
    cases = [
        ("serial (exact, colons)", cert.serial),
        ("serial (prefix, no colons, lower case)", cert.serial.replace(":", "").lower()[:-1]),
        ("fingerprint (full)", cert.fingerprint_sha256),
        ("fingerprint (prefix)", cert.fingerprint_sha256[:23]),
        ("CN contains (one station's number)", "-" + cert.common_name.split("-")[1] + "-aws"),
        ("CN exact", cert.common_name),
    ]
    print(
        "\n| search in issued certificates | p50 ms | p95 ms | CPU ms | queries | rows |"
        "\n|---|---|---|---|---|---|"
    )
    for label, term in cases:
        p50, p95, queries, _, _ = _measure(client, url + term, runs)
        rows = _search_rows(term)
        cpu = CPU_MS[url + term]
        print(f"| {label} | {p50:.1f} | {p95:.1f} | {cpu:.1f} | {queries} | {rows} |")


def agent(runs: int) -> str:
    from django.test import Client

    from devices.models import Station

    station = Station.objects.filter(name__startswith="b").order_by("name")[3]
    token = station.name  # the builder's token is the station's name
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    first = client.get("/api/v1/agent/config")
    etag = first["ETag"]
    report = {
        "agent_version": "bench",
        "devices": [{"name": "aws", "status": "connected", "connected": True}],
    }
    client.post("/api/v1/agent/state", report, content_type="application/json")
    print(
        "\n| agent endpoint (in-process) | p50 ms | p95 ms | CPU ms | queries | writes |"
        "\n|---|---|---|---|---|---|"
    )
    p50, p95, queries, writes, status = _measure(
        client, "/api/v1/agent/config", runs * 5, HTTP_IF_NONE_MATCH=etag
    )
    cpu = CPU_MS["/api/v1/agent/config"]
    print(
        f"| GET /agent/config, 304 (HTTP {status}) | {p50:.2f} | {p95:.2f} | {cpu:.2f} "
        f"| {queries} | {writes} |"
    )
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, writes = [], 0
    backend = [_backend_pid()] if connection.vendor == "postgresql" else []
    cpu0, db0 = time.process_time(), _cpu_of(backend)
    for _ in range(runs * 5):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            client.post("/api/v1/agent/state", report, content_type="application/json")
            times.append(time.perf_counter() - start)
        writes = sum(
            1
            for q in ctx.captured_queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))
        )
        queries = len(ctx.captured_queries)
    p50, p95 = _ms(times)
    cpu = (time.process_time() - cpu0 + _cpu_of(backend) - db0) * 1000 / (runs * 5)
    print(
        f"| POST /agent/state, unchanged report | {p50:.2f} | {p95:.2f} | {cpu:.2f} "
        f"| {queries} | {writes} |"
    )
    return etag


def server_command(server: str, port: int, workers: int, threads: int) -> list[str]:
    """The web server's command line: gunicorn (gthread workers) or granian (WSGI)."""
    if server == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--blocking-threads",
            str(threads),
            "--no-ws",
            "--log-level",
            "warning",
            "portal.wsgi:application",
        ]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "portal.wsgi",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        # One thread per worker: gunicorn's sync worker (as the Dockerfile runs it: no
        # keep-alive); more threads: gthread.
        *(["--worker-class", "sync"] if threads == 1 else ["--worker-class", "gthread"]),
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a server's workers, and theirs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def serve(
    seconds: int, etag: str, workers: int = 2, threads: int = 1, server: str = "gunicorn"
) -> None:
    """The web server (``workers`` x ``threads``) and wrk polling /agent/config with the
    ETag over keep-alive connections."""
    from devices.models import Station

    if not shutil.which("wrk"):
        print("\nwrk is not installed (apt-get install wrk): poll rate not measured")
        return
    if importlib.util.find_spec(server) is None:
        print(f"\n{server} is not installed (pip install {server}): poll rate not measured")
        return
    names = list(
        Station.objects.filter(name__startswith="b")
        .order_by("name")
        .values_list("name", flat=True)[:4]
    )
    port = 18731
    env = dict(os.environ, DEBUG="false", ALLOWED_HOSTS="127.0.0.1,localhost")
    proc = subprocess.Popen(
        server_command(server, port, workers, threads),
        cwd=ROOT,
        env=env,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/api/v1/agent/config"

        def run_wrk(duration: int) -> str:
            return subprocess.run(
                [
                    "wrk",
                    "-t",
                    "2",
                    "-c",
                    "16",
                    "-d",
                    f"{duration}s",
                    "-H",
                    f"Authorization: Bearer {names[3]}",
                    "-H",
                    f"If-None-Match: {etag}",
                    url,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        run_wrk(3)  # warm-up: workers import everything, open their database connections
        processes = [proc.pid, *_descendants(proc.pid)]
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            backends = [int(r[0]) for r in cursor.fetchall()]
        cpu0 = _cpu_of(processes), _cpu_of(backends)
        out = run_wrk(seconds)
        cpu1 = _cpu_of(processes), _cpu_of(backends)
        total = int(out.split(" requests in")[0].rsplit(None, 1)[-1])
        web_ms = (cpu1[0] - cpu0[0]) * 1000 / total
        db_ms = (cpu1[1] - cpu0[1]) * 1000 / total
        print(
            f"\nwrk (2 threads, 16 connections) against {server} ({workers} workers x "
            f"{threads} threads), "
            "GET /agent/config with If-None-Match (304):"
        )
        print("\n".join("    " + line for line in out.strip().splitlines()))
        print(
            f"CPU per poll: {web_ms:.3f} ms {server} + {db_ms:.3f} ms PostgreSQL = "
            f"{web_ms + db_ms:.3f} ms -> two cores serve {2000 / (web_ms + db_ms):.0f} polls/s "
            f"(load average during the run: {os.getloadavg()[0]:.1f})"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--certs-per-station", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument(
        "--server",
        choices=["gunicorn", "granian"],
        default="gunicorn",
        help="web server (--serve): the portal's gunicorn, or granian for comparison",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="server workers (--serve)")
    parser.add_argument(
        "--web-threads", type=int, default=1, help="threads per worker (--serve; 1: sync worker)"
    )
    parser.add_argument(
        "--only", choices=["all", "admin", "agent"], default="all", help="which part to measure"
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}")
    build(args.stations, args.certs_per_station)
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    if args.only in ("all", "admin"):
        changelists(client, args.runs)
        searches(client, args.runs)
    if args.only in ("all", "agent"):
        etag = agent(args.runs)
        if args.serve:
            serve(
                args.seconds,
                etag,
                workers=args.web_workers,
                threads=args.web_threads,
                server=args.server,
            )


if __name__ == "__main__":
    main()
