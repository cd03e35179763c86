"""The demo's AWS chain: the local AWS stand-in, demo data, simulated stations, scripted steps.

:func:`portal.demo.run_demo` drives it. Everything here goes through the same services and
management commands staff use (``setup_jitp``, ``add_signing_profile``, ``fleet_install``,
``approve_requests``); the demo only adds what a person would otherwise type (an access key
for the stand-in, the AWS service switch, the JITP form) and the station agents a real fleet
would run. Layout of the data folder: ``docs/demo.md``.

It passes 400 lines because the scripted demo's phases (stand-in, demo data, stations,
agents, the scripted steps) are one story a reader follows in order.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import string
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from portal.demo import ProcessGroup, localaws_argv

DEMO_ACCESS_KEY_ID = "AKIALOCALAWSDEMO0001"  # AKIA + 16: the shape the portal accepts
DEMO_REGION = "eu-west-1"
DEMO_ROLE_NAME = "demo-jitp"
DEMO_CA_ALIAS = "jitp-ca"
DEMO_CA_DN = "CN=Demo Fleet CA,O=Demo Fleet,C=DE"
DEMO_PROFILE = "demo"
DEMO_DEVICE = "aws"
STANDIN_KEYS = (
    "AWS_ENDPOINT_URL",
    "MQTT_ENDPOINT",
    "MQTT_PORT",
    "BROKER_CA",
    "AMAZON_CA",
    "BROKER",
    "JITP_ROLE_ARN",
)

Write = Callable[[str], None]


class DemoError(Exception):
    """A demo step failed; the message is one sentence for the terminal."""


# --- Secrets the demo generates once (data folder, mode 0600) ----------------------------------


def demo_secrets(path: Path) -> dict[str, str]:
    """CA password, device certificate password and the stand-in's access key secret.

    Kept in a 0600 file so that a re-run opens the CA it generated before; never printed.
    """
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    alphabet = string.ascii_letters + string.digits + "/+"
    wanted = {
        "CA_PASSWORD": lambda: secrets.token_urlsafe(18),
        "DEVICE_CERT_PASSWORD": lambda: secrets.token_urlsafe(18),
        "AWS_SECRET_ACCESS_KEY": lambda: "".join(secrets.choice(alphabet) for _ in range(40)),
    }
    missing = {k: make() for k, make in wanted.items() if not values.get(k)}
    if missing:
        values.update(missing)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# Demo secrets (generated once; local AWS stand-in only).\n")
            fh.writelines(f"{k}={v}\n" for k, v in values.items())
    os.chmod(path, 0o600)
    return values


def check_installed() -> None:
    """The demo runs the stand-in (needs moto) and real agents (the ``fleet-agent`` package)."""
    if importlib.util.find_spec("moto") is None:
        raise DemoError(
            "The demo needs the local AWS stand-in's extra: "
            "pip install -e '.[localaws]' (make install does it)."
        )
    if importlib.util.find_spec("fleet_agent") is None:
        raise DemoError(
            "The demo needs the station agent: pip install -e ./agent (make install does it)."
        )


# --- The local AWS stand-in (a child process) --------------------------------------------------


@dataclass
class StandIn:
    """What ``python -m localaws`` printed once its ports were bound."""

    endpoint_url: str
    mqtt_endpoint: str
    mqtt_port: int
    broker_ca: str
    amazon_ca: str
    broker: str
    role_arn: str


def standin_start(
    group: ProcessGroup,
    *,
    state_dir: Path,
    broker: str,
    mqtt_port: int,
    env: dict[str, str],
    timeout: float = 60.0,
) -> StandIn:
    """Start the stand-in in ``group`` and read its KEY=VALUE lines from its log file."""
    assert group.log_dir is not None
    log_path = group.log_dir / "localaws.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    child = group.start(
        "localaws",
        localaws_argv(
            state_dir=state_dir,
            mqtt_port=mqtt_port,
            options=("--broker", broker, "--create-role", DEMO_ROLE_NAME),
        ),
        env=env,
    )
    deadline = time.monotonic() + timeout
    values: dict[str, str] = {}
    while time.monotonic() < deadline:
        with log_path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key in STANDIN_KEYS:
                values[key] = value.strip()
        if "JITP_ROLE_ARN" in values:
            return StandIn(
                endpoint_url=values["AWS_ENDPOINT_URL"],
                mqtt_endpoint=values["MQTT_ENDPOINT"],
                mqtt_port=int(values["MQTT_PORT"]),
                broker_ca=values["BROKER_CA"],
                amazon_ca=values["AMAZON_CA"],
                broker=values["BROKER"],
                role_arn=values["JITP_ROLE_ARN"],
            )
        if child.proc is not None and child.proc.poll() is not None:
            last = text.strip().splitlines()[-1:] or ["no output"]
            raise DemoError(f"The local AWS stand-in did not start ({last[0]}); see {log_path}.")
        time.sleep(0.1)
    raise DemoError(
        f"The local AWS stand-in did not report its ports within {timeout:g} s; see {log_path}."
    )


# --- Demo data a person would otherwise type ---------------------------------------------------


@dataclass
class DemoStation:
    name: str
    token_file: Path
    state_dir: Path


def demo_prepare_aws(*, standin: StandIn, secrets_: dict[str, str]) -> None:
    """An access key for the stand-in, the AWS service on (region), the JITP form pre-filled.

    Through the services the admin uses; re-runs reuse what is there (a purged key is
    entered again).
    """
    from provisioning.aws.services import (
        access_key_create,
        access_key_delete,
        aws_service_update,
    )
    from provisioning.jitp import jitp_settings_get, jitp_settings_update
    from provisioning.models import AccessKey, JitpSettings

    key = AccessKey.objects.filter(access_key_id=DEMO_ACCESS_KEY_ID).first()
    if key is not None and not key.is_stored:
        access_key_delete(access_key=key)
        key = None
    if key is None:
        key = access_key_create(
            access_key_id=DEMO_ACCESS_KEY_ID,
            secret=secrets_["AWS_SECRET_ACCESS_KEY"],
            store_for="30d",
            description="Local AWS stand-in (demo)",
        )
    aws_service_update(enabled=True, region=DEMO_REGION)
    row = jitp_settings_get()
    fields: dict[str, Any] = {"access_key": key, "role_arn": standin.role_arn, "region": ""}
    if not row.registered_ca_alias:  # never registered: offer the demo CA to generate
        fields.update(
            ca_source=JitpSettings.CaSource.GENERATE,
            ca_alias=DEMO_CA_ALIAS,
            ca_dn=DEMO_CA_DN,
            ca_password=secrets_["CA_PASSWORD"],
        )
    jitp_settings_update(**fields)


def demo_stations(*, count: int, prefix: str, root: Path) -> list[DemoStation]:
    """Create (or reuse) ``count`` stations and write each token to a 0600 file.

    A station that exists keeps its token when the file still matches it; otherwise the
    token is rotated (it is stored hashed, so it cannot be read back).
    """
    from devices.models import Station
    from devices.services import station_create, station_rotate_token
    from portal.tokens import hash_token

    result = []
    for index in range(1, count + 1):
        name = f"{prefix}{index:03d}"
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        token_file = folder / "token"
        station = Station.objects.filter(name=name).first()
        token = None
        if station is None:
            station, token = station_create(name=name, description="Simulated demo station")
        elif (
            not token_file.exists()
            or hash_token(token_file.read_text().strip()) != station.token_hash
        ):
            token = station_rotate_token(station=station)
        if token is not None:
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token + "\n")
        os.chmod(token_file, 0o600)
        result.append(DemoStation(name=name, token_file=token_file, state_dir=folder / "state"))
    return result


def agents_start(
    group: ProcessGroup,
    *,
    stations: list[DemoStation],
    portal_url: str,
    standin: StandIn,
    env: dict[str, str],
) -> None:
    """One real agent process per station (``python -m fleet_agent run``).

    ``--connect-host 127.0.0.1:<MQTT_PORT>`` dials the stand-in wherever this run put it while
    the certificate is still checked against the endpoint name (SNI), as on AWS.
    """
    for station in stations:
        station.state_dir.mkdir(parents=True, exist_ok=True)
        group.start(
            f"agent-{station.name}",
            [
                sys.executable,
                "-m",
                "fleet_agent",
                "run",
                "--portal",
                portal_url,
                "--token-file",
                str(station.token_file),
                "--state-dir",
                str(station.state_dir),
                "--broker-ca",
                standin.broker_ca,
                "--connect-host",
                f"127.0.0.1:{standin.mqtt_port}",
                "--poll-interval",
                "2",
                "--request-poll-max",
                "2",
                "--portal-retry-max",
                "2",
                "--reconnect-max",
                "5",
                "--stable-after",
                "5",
            ],
            env=env,
        )


# --- Scripted mode ---------------------------------------------------------------------------


@contextmanager
def phase(write: Write, title: str, started: float) -> Iterator[None]:
    """One progress line per phase: what, and how long it took."""
    begin = time.monotonic()
    yield
    now = time.monotonic()
    write(f"[{now - started:6.1f} s] {title} ({now - begin:.1f} s)")


@contextmanager
def _env(**values: str) -> Iterator[None]:
    """Secrets for commands that read them from the environment (never argv)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _call(name: str, *args: str) -> str:
    """Run a management command in-process; its stdout is returned, failure is a DemoError."""
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=out)
    except CommandError as exc:
        raise DemoError(f"`manage.py {name}` failed: {exc}") from None
    return out.getvalue()


def _stuck(stations: list[DemoStation], since: datetime) -> list[str]:
    """Stations whose demo device has not connected during this run, with its status."""
    from devices.models import MqttDevice

    devices = {
        d.station.name: d
        for d in MqttDevice.objects.select_related("station").filter(
            station__name__in=[s.name for s in stations], name=DEMO_DEVICE
        )
    }
    stuck = []
    for station in stations:
        device = devices.get(station.name)
        if device is None:
            stuck.append(f"{station.name} (no device yet)")
        elif (
            device.status != MqttDevice.Status.CONNECTED
            or device.last_connected_at is None
            or device.last_connected_at < since
        ):
            detail = device.status + (f": {device.last_error}" if device.last_error else "")
            stuck.append(f"{station.name} ({detail})")
    return stuck


def _waiting_for_approval(stations: list[DemoStation]) -> list[str]:
    """Stations whose device has neither a certificate nor a request waiting for approval."""
    from devices.models import MqttDevice
    from signing.models import OnboardingRequest

    names = [s.name for s in stations]
    ready = set(
        MqttDevice.objects.filter(
            station__name__in=names,
            name=DEMO_DEVICE,
            current_certificate__isnull=False,
        ).values_list("station__name", flat=True)
    )
    ready |= set(
        OnboardingRequest.objects.filter(
            device__station__name__in=names,
            device__name=DEMO_DEVICE,
            status__in=[OnboardingRequest.Status.PENDING, OnboardingRequest.Status.APPROVED],
        ).values_list("device__station__name", flat=True)
    )
    return [n for n in names if n not in ready]


def _waiting(
    what: Callable[[], list[str]],
    *,
    deadline: float,
    timeout: float,
    sentence: str,
    dead: Callable[[], str | None],
) -> None:
    """Poll ``what()`` (names still waiting) until it is empty; DemoError on timeout."""
    while names := what():
        child = dead()
        if child is not None:
            raise DemoError(f"The {child} process stopped; {sentence}: {', '.join(names)}.")
        if time.monotonic() > deadline:
            raise DemoError(f"Timed out after {timeout:g} s; {sentence}: {', '.join(names)}.")
        time.sleep(0.3)


def wait_all_connected(
    *,
    stations: list[DemoStation],
    since: datetime,
    deadline: float,
    timeout: float,
    dead: Callable[[], str | None] = lambda: None,
) -> None:
    """Return once every station's demo device connected during this run; else DemoError
    naming the stuck stations with their device status."""
    _waiting(
        lambda: _stuck(stations, since),
        deadline=deadline,
        timeout=timeout,
        sentence="these stations are not connected",
        dead=dead,
    )


def run_scripted(
    *,
    standin: StandIn,
    stations: list[DemoStation],
    secrets_: dict[str, str],
    write: Write,
    timeout: float,
    started_at: datetime,
    t0: float,
    dead: Callable[[], str | None] = lambda: None,
) -> int:
    """Staff's steps through the same commands, then wait until every device is connected.

    ``dead()`` names a child process that has stopped (the demo cannot succeed then).
    """
    from django.utils import timezone

    from signing.models import SigningProfile

    deadline = time.monotonic() + timeout
    names = [s.name for s in stations]
    with (
        phase(write, f"JITP set up with the stand-in (CA '{DEMO_CA_ALIAS}')", t0),
        _env(CA_PASSWORD=secrets_["CA_PASSWORD"]),
    ):
        _call(
            "setup_jitp",
            "--access-key-id",
            DEMO_ACCESS_KEY_ID,
            "--role-arn",
            standin.role_arn,
            "--generate-ca",
            DEMO_CA_DN,
            "--alias",
            DEMO_CA_ALIAS,
        )
    with (
        phase(write, f"Signing profile '{DEMO_PROFILE}' ready", t0),
        _env(CA_PASSWORD=secrets_["CA_PASSWORD"]),
    ):
        if not SigningProfile.objects.filter(name=DEMO_PROFILE).exists():
            _call(
                "add_signing_profile",
                "--name",
                DEMO_PROFILE,
                "--ca-alias",
                DEMO_CA_ALIAS,
                "--country",
                "DE",
                "--organization",
                "Demo Fleet",
                "--default",
            )
    with (
        phase(write, f"Fleet install started on {len(names)} station(s)", t0),
        _env(DEVICE_CERT_PASSWORD=secrets_["DEVICE_CERT_PASSWORD"]),
    ):
        _call(
            "fleet_install",
            "--device-name",
            DEMO_DEVICE,
            "--profile",
            DEMO_PROFILE,
            "--endpoint",
            standin.mqtt_endpoint,
            "--port",
            str(standin.mqtt_port),
            "--stations",
            ",".join(names),
            "--comment",
            "demo",
        )
    with phase(write, "Every station sent its CSR", t0):
        _waiting(
            lambda: _waiting_for_approval(stations),
            deadline=deadline,
            timeout=timeout,
            sentence="no CSR yet from these stations",
            dead=dead,
        )
    with phase(write, "Requests approved and certificates issued", t0):
        left = max(5.0, deadline - time.monotonic())
        _call("approve_requests", "--all-pending", "--wait", f"{left:.0f}")
    with phase(write, "Every device connected through the stand-in", t0):
        wait_all_connected(
            stations=stations, since=started_at, deadline=deadline, timeout=timeout, dead=dead
        )
    write(
        f"All stations connected ({len(names)} of {len(names)}, "
        f"{(timezone.now() - started_at).total_seconds():.1f} s)."
    )
    return 0


def click_steps(
    *, standin: StandIn, secrets_path: Path, stations: list[DemoStation], url: str
) -> list[str]:
    """What to click in the admin to walk the chain by hand."""
    first, last = (stations[0].name, stations[-1].name) if stations else ("", "")
    return [
        "Steps:",
        f"  1. AWS provisioning > AWS IoT / JITP settings ({url}provisioning/jitpsettings/): "
        "everything is pre-filled; open the row and press 'Save and set up JITP'. The job page "
        f"ends with the data endpoint {standin.mqtt_endpoint}.",
        f"  2. Signing service > Signing profiles > Add: CA '{DEMO_CA_ALIAS}', country DE, the "
        f"CA password from CA_PASSWORD in {secrets_path}.",
        f"  3. Stations and devices > Stations: select {first} … {last}, action 'Install AWS "
        f"MQTT device': device 'aws', your profile, port {standin.mqtt_port}, a certificate "
        "password of 8+ characters.",
        "  4. Signing service > Onboarding requests: select the pending requests, action "
        "'Approve'.",
        "  5. Stations: watch each device turn 'connected' (the agents' logs are in the logs "
        "folder).",
    ]
