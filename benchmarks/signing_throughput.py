"""Signing throughput: N pending EC P-256 requests, bulk approve, a real worker signs them all.

Usage (PostgreSQL and Redis strongly recommended; the database is migrated if needed):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/signing_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/9 \\
    python benchmarks/signing_throughput.py [--count 10000] [--concurrency 1] \\
        [--backend database|pkcs11]

``--backend pkcs11`` keeps the CA key in a PKCS#11 token: the one PKCS11_MODULE,
PKCS11_TOKEN_LABEL and PKCS11_PIN name, or else a throw-away SoftHSM2 token the script
makes (``softhsm2-util``; its worker inherits SOFTHSM2_CONF).

It prints, measured in the same run:
- the raw single-core rate of a plain ``cryptography`` loop (load CSR, verify, build, sign,
  PEM) with the same CA key and extensions, before and after each portal run;
- the portal's end-to-end rate (bulk approve -> Celery batches -> certificates in the DB),
  with the two phases timed separately: approve + enqueue, then signing until all issued;
- the ratios by wall clock and by CPU time (the worker's, and the worker's plus its
  PostgreSQL backends' plus the approval's), and the worker's peak RSS (bounded by the
  batch size, not by N);
- with ``--repeat N``, every run and the best and median of the ratios;
- the key store's own signing rate for the CA's backend (one core, no database).

The CSRs' self-signatures are verified when a request is submitted (``csr_validate``, as
the station API does), not again when it is signed; that submission check is timed and
printed separately (it is not part of approve -> issued).

The script creates its own CA, profile, station, devices and requests (names prefixed
``bench-``) and deletes them after each run unless ``--keep``. On PostgreSQL it runs
``VACUUM ANALYZE`` on the tables it writes before each run (the shared server here runs
with autovacuum off; without it dead rows of earlier runs pile up).

One file on purpose: anyone can rerun it with one command, with no helper modules to find.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.demo import QUIET_WORKER, celery_worker_argv  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def _make_csr(_: int) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def softhsm_token() -> None:
    """Point PKCS11_* at a throw-away SoftHSM2 token unless they name a token already."""
    import shutil
    import tempfile

    if os.environ.get("PKCS11_MODULE"):
        return
    util = shutil.which("softhsm2-util")
    module = next(
        (
            m
            for m in (
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            )
            if Path(m).exists()
        ),
        None,
    )
    if util is None or module is None:
        sys.exit("--backend pkcs11: install SoftHSM2 (apt-get install softhsm2) or set PKCS11_*.")
    directory = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n")
    pin = uuid.uuid4().hex[:12]
    os.environ.update(
        SOFTHSM2_CONF=str(conf), PKCS11_MODULE=module, PKCS11_TOKEN_LABEL="bench", PKCS11_PIN=pin
    )
    subprocess.run(
        [util, "--init-token", "--free", "--label", "bench", "--pin", pin, "--so-pin", pin],
        check=True,
        capture_output=True,
    )
    print(f"SoftHSM2 token 'bench' in {directory}")


def keystore_loop(ca, password: str, ca_cert, count: int) -> float:  # noqa: ANN001
    """Certificates per second the CA's key store signs (one signer, builders prepared)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from signing.keystore import get_key_store

    now = datetime.now(UTC)
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    builders = [
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"k-{i}")]))
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        for i in range(count)
    ]
    sign = get_key_store().signer(ca, password)
    start = time.perf_counter()
    for builder in builders:
        sign(builder)
    return count / (time.perf_counter() - start)


def raw_loop(csrs: list[str], ca_cert, ca_key) -> tuple[float, float]:  # noqa: ANN001
    """(wall-clock, CPU-time) certificates per second of a plain cryptography loop, one core."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from signing.crypto import key_usage

    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    ku = key_usage(digital_signature=True)
    now = datetime.now(UTC)
    start = time.perf_counter()
    cpu_start = time.process_time()
    for i, pem in enumerate(csrs):
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
        assert csr.is_signature_valid
        pub = csr.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                        x509.NameAttribute(NameOID.COMMON_NAME, f"raw-{i}"),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(ku, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .add_extension(aki, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert.public_bytes(Encoding.PEM)
    return (
        len(csrs) / (time.perf_counter() - start),
        len(csrs) / (time.process_time() - cpu_start),
    )


def _cpu_seconds(pids: list[int]) -> float:
    """user + system CPU time of processes (and their reaped children), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> tuple[int, int]:
    """(current VmRSS, peak VmHWM) of a process in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in values:
                values[key] = int(line.split()[1])
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


def _worker_pids(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def _backend_pids(connection) -> list[int]:  # noqa: ANN001
    """PostgreSQL backends of this database other than ours (the worker's connections)."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return [r[0] for r in cursor.fetchall()]


def _own_backend_pid(connection) -> int | None:  # noqa: ANN001
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _vacuum(connection, tables: list[str]) -> None:  # noqa: ANN001
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE " + ", ".join(f'"{t}"' for t in tables))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="worker processes (1 = solo pool, one core)"
    )
    parser.add_argument(
        "--raw-count", type=int, default=2000, help="CSRs for the raw single-core loop"
    )
    parser.add_argument("--repeat", type=int, default=1, help="portal runs (fresh rows each)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's rows")
    parser.add_argument(
        "--backend",
        choices=["database", "pkcs11"],
        default="database",
        help="where the CA key lives (pkcs11: SoftHSM2 unless PKCS11_* are set)",
    )
    args = parser.parse_args()
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be at least 1.")
    if args.backend == "pkcs11":
        softhsm_token()

    import django

    django.setup()
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from devices.models import MqttDevice
    from portal.models import AuditEvent
    from signing.keystore import ca_certificate
    from signing.models import (
        CertificateAuthority,
        IssuedCertificate,
        OnboardingRequest,
        SigningProfile,
    )
    from signing.services import ca_generate, signing_profile_create

    vendor = connection.vendor
    if vendor != "postgresql":
        print(
            f"warning: running on {vendor}; the figures are meant for PostgreSQL.", file=sys.stderr
        )
    call_command("migrate", verbosity=0)
    tables = [
        m._meta.db_table for m in (MqttDevice, OnboardingRequest, IssuedCertificate, AuditEvent)
    ]

    tag = uuid.uuid4().hex[:6]
    password = f"bench-{uuid.uuid4().hex}"
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, database {vendor}, "
        f"broker {settings.CELERY_BROKER_URL.split('://')[0]}; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )

    t0 = time.perf_counter()
    with multiprocessing.Pool() as pool:
        csrs = pool.map(_make_csr, range(args.count), chunksize=250)
    print(f"generated {args.count} EC P-256 CSRs in {time.perf_counter() - t0:.1f} s")

    ca = ca_generate(
        alias=f"bench-{tag}",
        dn=f"CN=Bench CA {tag},C=DE",
        password=password,
        key_type="ec-p256",
        backend=args.backend,
    )
    profile = signing_profile_create(
        name=f"bench-{tag}", ca=ca, ca_password=password, country="DE", organization="Bench"
    )
    print(
        f"key store ({args.backend}) signing alone, one core: "
        f"{keystore_loop(ca, password, ca_certificate(ca), min(args.raw_count, 2000)):,.0f} "
        "certs/s"
    )
    # The raw loop's reference key lives in memory: the key store hands out no CA key.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    runs: list[dict[str, float]] = []
    try:
        for rep in range(args.repeat):
            print(f"--- run {rep + 1} of {args.repeat}")
            _vacuum(connection, tables)
            run = _portal_run(
                args, csrs, profile, f"{tag}{rep}", ca_key, ca_certificate(ca), connection
            )
            if run is None:
                return 1
            runs.append(run)
    finally:
        if not args.keep:
            SigningProfile.objects.filter(pk=profile.pk).delete()
            CertificateAuthority.objects.filter(pk=ca.pk).delete()
    if len(runs) > 1:
        print("--- summary")
        for key, label in (
            ("ratio_wall", "ratio wall clock"),
            ("ratio_cpu", "ratio CPU (worker)"),
            ("ratio_cpu_all", "ratio CPU (worker + PostgreSQL + approve)"),
            ("rate", "portal certs/s"),
            ("raw", "raw loop certs/s (wall)"),
        ):
            values = [r[key] for r in runs]
            print(
                f"{label}: best {max(values):,.2f}, median {statistics.median(values):,.2f}"
                f" (runs: {', '.join(f'{v:,.2f}' for v in values)})"
            )
    print("load average at the end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"date: {timezone.now():%Y-%m-%d %H:%M} UTC")
    return 0


def _portal_run(
    args,
    csrs,
    profile,
    tag,
    ca_key,
    ca_cert,
    connection,  # noqa: ANN001, PLR0913
) -> dict[str, float] | None:
    """One portal run on fresh rows: approve everything, wait until all are issued."""
    from django.conf import settings
    from django.db.models import Count

    from devices.models import MqttDevice, Station
    from portal.models import AuditEvent
    from signing.csr import csr_validate
    from signing.models import IssuedCertificate, OnboardingRequest
    from signing.services import onboarding_requests_approve

    count = len(csrs)
    raw_rate, raw_cpu_rate = raw_loop(csrs[: args.raw_count], ca_cert, ca_key)
    print(
        f"raw cryptography loop, one core: {raw_rate:,.0f} certs/s wall clock, "
        f"{raw_cpu_rate:,.0f} certs per CPU-second ({min(args.raw_count, count)} "
        "certificates)"
    )

    t0 = time.perf_counter()
    station = Station.objects.create(
        name=f"bench-{tag}", token_hash=uuid.uuid4().hex * 2, token_prefix="bench"
    )
    devices = MqttDevice.objects.bulk_create(
        [MqttDevice(station=station, name=f"d{i}", signing_profile=profile) for i in range(count)],
        batch_size=2000,
    )
    rows = []
    check_cpu = time.process_time()
    valid_csrs = [csr_validate(pem) for pem in csrs]  # what the station API does per request
    check_cpu = time.process_time() - check_cpu
    for device, valid in zip(devices, valid_csrs, strict=True):
        rows.append(
            OnboardingRequest(
                station=station,
                device=device,
                profile=profile,
                csr_pem=valid.pem,
                key_type=valid.key_type,
                public_key_fingerprint=valid.public_key_fingerprint,
            )
        )
    del valid_csrs
    OnboardingRequest.objects.bulk_create(rows, batch_size=2000)
    ids = [r.pk for r in rows]
    del rows
    print(
        f"created {count} pending requests in {time.perf_counter() - t0:.1f} s; the "
        f"submission check (csr_validate: parse, key type, self-signature) took "
        f"{check_cpu / count * 1e6:.0f} µs CPU per CSR (at submission, not timed below)"
    )

    env = dict(os.environ)
    keys = settings.FIELD_ENCRYPTION_KEY
    env.update(
        DATABASE_URL=env.get("DATABASE_URL", f"sqlite:///{connection.settings_dict['NAME']}"),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        PORTAL_DATA_DIR=str(settings.DATA_DIR),
        FIELD_ENCRYPTION_KEY=",".join(keys if isinstance(keys, list) else [keys]),
        SECRET_KEY=settings.SECRET_KEY,
        PYTHONPATH=str(ROOT),
        DEBUG="false",  # as in production: no per-query log in the worker
    )
    log_path = Path(settings.DATA_DIR) / f"bench-worker-{tag}.log"
    log = log_path.open("w")
    pool_args = ["-P", "solo"] if args.concurrency == 1 else ["-P", "prefork"]
    worker = subprocess.Popen(
        celery_worker_argv(
            name=f"bench-{tag}@%h",
            concurrency=args.concurrency,
            loglevel="INFO",
            queues="signing",
            options=(*pool_args, *QUIET_WORKER),
        ),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    peak_kib = 0
    own_pid = _own_backend_pid(connection)
    try:
        time.sleep(1)
        deadline = time.monotonic() + 60
        while "ready" not in log_path.read_text() and time.monotonic() < deadline:
            if worker.poll() is not None:
                print(log_path.read_text(), file=sys.stderr)
                return None
            time.sleep(0.2)
        time.sleep(2)  # let the worker connect to the broker
        pids = _worker_pids(worker.pid)
        backends_before = {pid: _cpu_seconds([pid]) for pid in _backend_pids(connection)}
        cpu_before = _cpu_seconds(pids)
        own_before = _cpu_seconds([own_pid]) if own_pid else 0.0
        load_before = os.getloadavg()[0]
        approve_cpu = time.process_time()
        start = time.perf_counter()
        approved = onboarding_requests_approve(ids=ids, actor_label="benchmark")
        approve_s = time.perf_counter() - start
        approve_cpu = time.process_time() - approve_cpu
        approve_pg = (_cpu_seconds([own_pid]) - own_before) if own_pid else 0.0
        print(
            f"phase 1, bulk approve + enqueue of {len(approved)} requests: {approve_s:.2f} s "
            f"(CPU: {approve_cpu:.2f} s here + {approve_pg:.2f} s PostgreSQL)"
        )
        mine = OnboardingRequest.objects.filter(station=station)
        while True:
            # Cheap polling (by station, 10 times a second) so the observer hardly loads
            # the database; the end time is therefore at most 0.1 s late.
            done = dict(
                mine.filter(status__in=["issued", "failed"])
                .values_list("status")
                .annotate(n=Count("id"))
                .order_by()
            )
            issued = done.get("issued", 0)
            for pid in pids:
                peak_kib = max(peak_kib, _rss_kib(pid)[1])
            if issued + done.get("failed", 0) >= len(ids):
                break
            if time.perf_counter() - start > args.timeout:
                print(f"timed out with {issued} of {len(ids)} issued", file=sys.stderr)
                return None
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        worker_cpu = _cpu_seconds(pids) - cpu_before
        backends = _backend_pids(connection)
        worker_pg = sum(_cpu_seconds([pid]) - backends_before.get(pid, 0.0) for pid in backends)
        load_after = os.getloadavg()[0]
    finally:
        for pid in _worker_pids(worker.pid):
            peak_kib = max(peak_kib, _rss_kib(pid)[1])
        worker.terminate()
        worker.wait(30)
        log.close()
    sign_s = elapsed - approve_s
    rate = issued / elapsed
    certs = IssuedCertificate.objects.filter(request_id__in=ids).count()
    processes = f"{args.concurrency} worker process{'es' if args.concurrency > 1 else ''}"
    print(
        f"phase 2, signing until all issued ({processes}): {sign_s:.2f} s = "
        f"{issued / sign_s:,.0f} certs/s"
    )
    print(
        f"portal end to end (approve -> all issued): {issued} issued in {elapsed:.2f} s = "
        f"{rate:,.0f} certs/s"
    )
    raw_after, raw_cpu_after = raw_loop(csrs[: args.raw_count], ca_cert, ca_key)
    print(
        f"raw loop again after the run: {raw_after:,.0f} certs/s wall clock, "
        f"{raw_cpu_after:,.0f} per CPU-second"
    )
    # The faster of the two raw measurements is the reference: the ratio is not flattered
    # by a raw loop that happened to run while the machine was busy.
    raw = max(raw_rate, raw_after)
    raw_cpu = max(raw_cpu_rate, raw_cpu_after)
    print(
        f"ratio portal / raw single core: {rate / raw:.2f} (wall clock; load average "
        f"{load_before:.1f} -> {load_after:.1f})"
    )
    cpu_rate = issued / worker_cpu if worker_cpu else float("nan")
    print(
        f"worker CPU: {worker_cpu:.2f} s = {worker_cpu / issued * 1e6:.0f} µs per "
        f"certificate = {cpu_rate:,.0f} certs per worker CPU-second; ratio to the raw "
        f"loop's CPU rate: {cpu_rate / raw_cpu:.2f} (load-independent)"
    )
    all_cpu = worker_cpu + worker_pg + approve_cpu + approve_pg
    all_rate = issued / all_cpu if all_cpu else float("nan")
    if connection.vendor == "postgresql":
        print(
            f"PostgreSQL CPU of the worker's connections: {worker_pg:.2f} s = "
            f"{worker_pg / issued * 1e6:.0f} µs per certificate; all CPU (worker + its "
            f"PostgreSQL + approve): {all_cpu:.2f} s = {all_rate:,.0f} certs per CPU-second;"
            f" ratio {all_rate / raw_cpu:.2f}"
        )
    print(f"worker peak RSS: {peak_kib / 1024:.0f} MiB (largest process)")
    assert certs == issued, "certificate rows and issued requests disagree"

    if not args.keep:
        cert_ids = list(
            IssuedCertificate.objects.filter(request_id__in=ids).values_list("pk", flat=True)
        )
        MqttDevice.objects.filter(station=station).update(current_certificate=None)
        IssuedCertificate.objects.filter(pk__in=cert_ids).delete()
        AuditEvent.objects.filter(
            object_type="signing.onboardingrequest", object_id__in=[str(i) for i in ids]
        ).delete()
        OnboardingRequest.objects.filter(pk__in=ids).delete()
        station.delete()
    return {
        "rate": rate,
        "raw": raw,
        "ratio_wall": rate / raw,
        "ratio_cpu": cpu_rate / raw_cpu,
        "ratio_cpu_all": all_rate / raw_cpu,
        "approve_s": approve_s,
        "sign_s": sign_s,
        "peak_mib": peak_kib / 1024,
    }


if __name__ == "__main__":
    sys.exit(main())
