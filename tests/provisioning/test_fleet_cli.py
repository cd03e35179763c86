"""`manage.py fleet_install`: errors are one sentence with a non-zero exit; dry run prints the
plan; a real run records the install and its rows."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from devices.models import MqttDevice
from provisioning.models import FleetInstall, Job
from tests.conftest import ROOT, subprocess_env
from tests.devices.factories import DEVICE_PASSWORD, make_device, make_profile, make_station

ENDPOINT = "abc123-ats.iot.eu-west-1.amazonaws.com"
# What every install names: the device, the signing profile and the broker endpoint.
INSTALL = ("--device-name", "aws", "--profile", "fleet", "--endpoint", ENDPOINT)


def run(*args: str) -> str:
    out = StringIO()
    call_command("fleet_install", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--stations", "st-a,ghost"], "Unknown station(s): ghost."),
        (["--stations", " , "], "Select at least one station."),
        (["--stations", "st-a", "--endpoint", ""], "A broker endpoint is required."),
        (["--stations", "st-a", "--profile", "nope"], "There is no signing profile named 'nope'."),
    ],
)
def test_cli_errors(monkeypatch, args, sentence) -> None:  # noqa: ANN001
    monkeypatch.setenv("DEVICE_CERT_PASSWORD", DEVICE_PASSWORD)
    make_station("st-a")
    make_profile()
    base = {"--device-name": "aws", "--profile": "fleet", "--endpoint": ENDPOINT}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = [x for kv in base.items() for x in kv]
    with pytest.raises(CommandError) as info:
        run(*argv)
    assert sentence in str(info.value)
    assert not Job.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "sentence"),
    [(None, "Set DEVICE_CERT_PASSWORD"), ("short", "at least 8 characters")],
)
def test_cli_needs_the_password_from_the_environment(monkeypatch, password, sentence) -> None:  # noqa: ANN001
    if password is None:
        monkeypatch.delenv("DEVICE_CERT_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("DEVICE_CERT_PASSWORD", password)
    make_station("st-a")
    make_profile()
    with pytest.raises(CommandError, match=sentence):
        run(*INSTALL, "--stations", "st-a")
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_cli_dry_run_prints_the_plan_and_changes_nothing(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("DEVICE_CERT_PASSWORD", raising=False)
    make_station("st-a")
    b, _ = make_station("st-b")
    make_device(b, status=MqttDevice.Status.CONNECTED)
    make_profile()
    out = run(*INSTALL, "--all", "--dry-run")
    assert "st-a: create: Create device 'aws'" in out
    assert "st-b: skip: Already connected" in out
    assert "Dry run, nothing changed: 1 to create, 0 to update, 0 unchanged, 1 already" in out
    assert MqttDevice.objects.count() == 1


@pytest.mark.django_db
def test_cli_real_run_records_rows(monkeypatch, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    monkeypatch.setenv("DEVICE_CERT_PASSWORD", DEVICE_PASSWORD)
    make_station("st-a")
    make_station("st-b")
    make_profile()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        out = run(*INSTALL, "--stations", "st-a,st-b", "--port", "8884")
    assert "Started Fleet install #" in out
    assert DEVICE_PASSWORD not in out
    assert len(callbacks) == 1
    install = FleetInstall.objects.get()
    assert install.port == 8884
    assert install.key_password == DEVICE_PASSWORD
    assert sorted(install.stations.values_list("station__name", flat=True)) == ["st-a", "st-b"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_cli_exit_status_and_stderr_sentence() -> None:
    make_station("st-a")
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "fleet_install",
            *INSTALL,
            "--stations",
            "ghost",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(DEVICE_CERT_PASSWORD=DEVICE_PASSWORD),
    )
    assert result.returncode != 0
    assert "Unknown station(s): ghost." in result.stderr
    assert "Traceback" not in result.stderr
