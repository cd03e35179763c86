"""The demo's AWS chain: the local AWS stand-in, demo data, simulated stations, scripted steps.

:func:`portal.demo.run_demo` drives it. Everything here goes through the same services and
management commands staff use (``setup_jitp``, ``add_signing_profile``, ``fleet_install``,
``approve_requests``); the demo only adds what a person would otherwise type (an access key
for the stand-in, the AWS service switch, the JITP form) and the station agents a real fleet
would run. Layout of the data folder: ``docs/demo.md``.

The scripted steps and the steps to click are in :mod:`portal.demo_script`.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import string
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
