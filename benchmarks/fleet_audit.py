"""Fleet audit: AWS calls and duration for N devices at the paced rate, measured, and the
same figures computed for a larger fleet by the audit's formula.

Usage:
    python benchmarks/fleet_audit.py [--devices 1000] [--rate 10] [--estimate 10000]

It runs against moto with the local stand-in's IoT extensions (paged
ListCertificatesByCA), in this process, on a throw-away SQLite database of its own: one CA
of ours registered in AWS, N devices each with an issued certificate registered under it,
ACTIVE, attached to its thing and to one policy (what JITP leaves). It then runs the audit
once at ``--rate`` calls per second (the outbox runner's pacer) and prints the measured
calls and duration next to the formula's (``provisioning.audit.snapshot.estimate_calls``),
and the formula's figures for ``--estimate`` devices.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="paced AWS calls per second")
    parser.add_argument("--estimate", type=int, default=10000)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="bench-audit-")
    os.environ["PORTAL_DATA_DIR"] = data
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    import boto3
    from django.conf import settings
    from django.core.management import call_command
    from moto.server import ThreadedMotoServer
    from moto.settings import default_user_config

    call_command("migrate", verbosity=0)
    from devices.services import station_create
    from localaws import iot_extensions
    from provisioning.audit.services import audit_estimate, fleet_audit_run
    from provisioning.audit.snapshot import estimate_calls
    from provisioning.aws.models import AccessKey
    from provisioning.aws.services import aws_service_update
    from provisioning.jitp import jitp_settings_get
    from provisioning.jitp.documents import policy_document_build
    from signing.models import IssuedCertificate
    from signing.services import (
        ca_generate,
        onboarding_request_submit,
        onboarding_requests_approve,
        onboarding_requests_sign,
        signing_profile_create,
    )
    from tests.signing.conftest import make_ec_csr

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    default_user_config.setdefault("iot", {})["use_valid_cert"] = True
    iot_extensions.apply()
    settings.AWS_ENDPOINT_URL = url
    settings.FLEET_AUDIT_RATE = args.rate
    settings.SIGNING_RATE_LIMIT_PER_MINUTE = 10**9
    try:
        aws_service_update(enabled=True, region="eu-west-1")
        from django.utils import timezone

        key = AccessKey.objects.create(
            access_key_id="AKIABENCHAUDIT000001",
            secret="s" * 40,
            store_for="1d",
            purge_at=timezone.now() + timezone.timedelta(days=1),
        )
        ca = ca_generate(alias="bench-ca", dn="CN=Bench CA,C=DE", password="bench-password-1")
        signing_profile_create(
            name="bench", ca=ca, ca_password="bench-password-1", country="DE", is_default=True
        )
        row = jitp_settings_get()
        row.access_key, row.region, row.ca_alias = key, "eu-west-1", ca.alias
        row.save()
        station, _ = station_create(name="bench-station")
        t0 = time.monotonic()
        ids = [
            onboarding_request_submit(station=station, device_name=f"d{i}", csr=make_ec_csr())[0].pk
            for i in range(args.devices)
        ]
        onboarding_requests_approve(ids=ids)
        for start in range(0, len(ids), 200):
            onboarding_requests_sign(ids=ids[start : start + 200])
        certs = list(IssuedCertificate.objects.values_list("certificate_pem", "common_name"))
        iot = boto3.client(
            "iot",
            region_name="eu-west-1",
            endpoint_url=url,
            aws_access_key_id="AKIAOTHER",
            aws_secret_access_key="x" * 40,
        )
        iot.register_ca_certificate(
            caCertificate=ca.certificate_pem, setAsActive=True, certificateMode="SNI_ONLY"
        )
        document = policy_document_build(
            mode=row.policy_mode, region="eu-west-1", account_id="123456789012"
        )
        iot.create_policy(policyName="JITP-bench", policyDocument=json.dumps(document))

        def jitp(item: tuple[str, str]) -> None:
            pem, cn = item
            arn = iot.register_certificate(
                certificatePem=pem, caCertificatePem=ca.certificate_pem, status="ACTIVE"
            )["certificateArn"]
            iot.create_thing(thingName=cn)
            iot.attach_thing_principal(thingName=cn, principal=arn)
            iot.attach_policy(policyName="JITP-bench", target=arn)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(jitp, certs))
        print(
            f"set-up: {args.devices} devices in the portal and in AWS in "
            f"{time.monotonic() - t0:.0f} s"
        )

        run = fleet_audit_run(actor_label="benchmark")
        assert run.status == "done", run.error
        formula = estimate_calls(
            certificates=run.counts["certificates"],
            things=run.counts["things"],
            policies=run.counts["policies"],
        )
        print(
            f"measured: {args.devices} devices, {run.calls} AWS calls in "
            f"{run.duration_seconds:.1f} s at {args.rate:g} calls/s "
            f"({run.calls / run.duration_seconds:.2f} calls/s achieved); "
            f"findings {run.counts['findings'] or '{}'}"
        )
        print(f"formula:  {formula} calls, {formula / args.rate:.1f} s at {args.rate:g} calls/s")
        for n in sorted({args.devices, args.estimate}):
            est = audit_estimate(devices=n, rate=args.rate)
            print(
                f"computed: {n} devices -> {est.calls} calls, {est.seconds:.0f} s "
                f"({est.seconds / 60:.1f} min) at {args.rate:g} calls/s"
            )
    finally:
        iot_extensions.revert()
        server.stop()


if __name__ == "__main__":
    main()
