"""End to end: a renewal through the stand-in with a real agent retires the old certificate in
AWS, once, and a worker killed in the middle of the retirement changes nothing of the end.

The demo (stand-in, web, worker, beat, one real agent) runs with a shortened grace period;
the device's renewal point is moved into the past (as staff would), the agent renews once,
connects with the new certificate, and AWS ends with exactly one ACTIVE certificate on the
thing; the old one INACTIVE, detached, then deleted after the grace period. The Celery
worker's pool processes are SIGKILLed while the retirement's actions run; the worker starts
new ones and the outbox finishes the work.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import boto3
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import DemoRun, needs_mosquitto_clients
from tests.e2e.test_demo_e2e import STANDIN_LINE

# The demo's start, one renewal, the retirement and the grace period: several minutes.
pytestmark = [needs_mosquitto_clients, pytest.mark.slow, pytest.mark.timeout(720)]

GRACE_SECONDS = 20


def _query(demo: DemoRun, code: str) -> object:
    """Run ``code`` (which sets ``out``) in the demo's Django and return ``out``."""
    script = (
        "import json\nfrom django.utils import timezone\nfrom datetime import timedelta\n"
        "from signing.models import IssuedCertificate\n"
        "from provisioning.lifecycle.models import AwsAction\n"
        f"{code}\nprint('JSON:' + json.dumps(out, default=str))"
    )
    output = demo.manage("shell", "-c", script)
    line = [x for x in output.splitlines() if x.startswith("JSON:")][-1]
    return json.loads(line[5:])


def _pool_pids(data_dir: str) -> list[int]:
    """The Celery worker's pool processes (children of the worker's main process)."""
    marker = f"PORTAL_DATA_DIR={data_dir}".encode()
    procs: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmd = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(entry.name)] = (ppid, cmd)
    workers = {pid for pid, (_, cmd) in procs.items() if b"celery" in cmd and b"\0worker\0" in cmd}
    return [pid for pid, (ppid, _) in procs.items() if ppid in workers]


def test_a_renewal_retires_the_old_certificate_once_even_when_the_worker_dies(
    demo_env: dict[str, str],
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:6]}-"
    env = dict(
        demo_env,
        AWS_RETIRED_CERTIFICATE_GRACE_SECONDS=str(GRACE_SECONDS),
        AWS_ACTION_STALE_SECONDS="5",
        AWS_ACTION_RATE="0.2",  # slow enough to kill the worker between two of its calls
        AGENT_POLL_INTERVAL="3",
    )
    demo = DemoRun.scripted(env, prefix=prefix, stations=1, timeout=150, keep_running=True)
    try:
        found = demo.wait_line(STANDIN_LINE, timeout=90)
        demo.wait_line(r"Every device connected", timeout=180)
        iot = boto3.client(
            "iot",
            region_name="eu-west-1",
            endpoint_url=found["url"],
            aws_access_key_id="AKIALOCALAWSDEMO0001",
            aws_secret_access_key="x" * 40,
        )
        station = f"{prefix}001"
        first = f"c = IssuedCertificate.objects.get(device__station__name='{station}')\n"
        wait_for(
            lambda: _query(demo, first + "out = c.aws_status") == "ACTIVE",
            timeout=60,
            message="the first certificate confirmed ACTIVE in AWS",
        )
        old = _query(
            demo,
            first + "IssuedCertificate.objects.filter(pk=c.pk).update("
            "renew_after=timezone.now() - timedelta(minutes=1))\n"
            "out = [c.pk, c.aws_certificate_id, c.common_name]",
        )
        assert isinstance(old, list)
        old_pk, old_id, thing = old

        # Kill the worker's pool while the retirement's actions are being carried out.
        retiring = (
            f"out = sorted(AwsAction.objects.filter(certificate_id={old_pk})"
            ".exclude(kind='confirm').values_list('kind', 'status'))"
        )
        state = (
            "out = [list(IssuedCertificate.objects.values_list('pk', 'status', 'aws_status', "
            "'first_connected_at', 'aws_note')), list(AwsAction.objects.values_list("
            "'kind', 'certificate_id', 'status', 'attempts', 'last_error'))]"
        )

        def old_status() -> str:
            try:
                desc = iot.describe_certificate(certificateId=old_id)["certificateDescription"]
            except iot.exceptions.ResourceNotFoundException:
                return "DELETED"
            return str(desc["status"])

        # The retirement has begun in AWS (DEACTIVATE done; the detaches follow, paced).
        try:
            wait_for(lambda: old_status() != "ACTIVE", timeout=150, message="the retirement")
        except pytest.fail.Exception:
            pytest.fail(f"No retirement in AWS; portal state: {_query(demo, state)}")
        killed = _pool_pids(env["PORTAL_DATA_DIR"])
        assert killed, "no Celery pool process found"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        at_kill = _query(demo, retiring)
        assert isinstance(at_kill, list)

        def aws_view() -> tuple[list[str], str, list[str]]:
            principals = iot.list_thing_principals(thingName=thing)["principals"]
            active = [
                p
                for p in principals
                if iot.describe_certificate(certificateId=p.rsplit("/", 1)[-1])[
                    "certificateDescription"
                ]["status"]
                == "ACTIVE"
            ]
            try:
                desc = iot.describe_certificate(certificateId=old_id)["certificateDescription"]
            except iot.exceptions.ResourceNotFoundException:
                return active, "DELETED", []
            old_things = iot.list_principal_things(principal=desc["certificateArn"])["things"]
            return active, str(desc["status"]), list(old_things)

        try:
            wait_for(
                lambda: (
                    lambda v: len(v[0]) == 1 and v[1] in ("INACTIVE", "DELETED") and v[2] == []
                )(aws_view()),
                timeout=120,
                message=f"one ACTIVE certificate on {thing}, the old one INACTIVE and detached",
            )
        except pytest.fail.Exception:
            pytest.fail(f"AWS: {aws_view()}; at the kill {at_kill}; now {_query(demo, state)}")
        # The kill came while the retirement was under way (DELETE waits for the grace).
        assert any(status != "done" for kind, status in at_kill if kind != "delete"), at_kill
        active, _, _ = aws_view()
        assert not active[0].endswith(old_id)
        wait_for(
            lambda: aws_view()[1] == "DELETED",
            timeout=GRACE_SECONDS + 90,
            message="the old certificate deleted after the grace period",
        )
        state = _query(
            demo,
            f"qs = IssuedCertificate.objects.filter(device__station__name='{station}')\n"
            "out = sorted(qs.values_list('status', flat=True))",
        )
        # Exactly one renewal for the one renewal point: the old one superseded, one active.
        assert state == ["active", "superseded"]
        assert len(aws_view()[0]) == 1
    finally:
        demo.stop()
