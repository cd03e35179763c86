"""The scripted demo: staff's steps through the same management commands (``setup_jitp``,
``add_signing_profile``, ``fleet_install``, ``approve_requests``), then the wait until every
demo device is connected; and the steps to click for the manual demo.

:func:`portal.demo.run_demo` calls it after :mod:`portal.demo_chain` started the stand-in,
made the demo data and started the agents.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from portal.demo_chain import (
    DEMO_ACCESS_KEY_ID,
    DEMO_CA_ALIAS,
    DEMO_CA_DN,
    DEMO_DEVICE,
    DEMO_PROFILE,
    DemoError,
    DemoStation,
    StandIn,
    Write,
)


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
