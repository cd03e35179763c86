"""The station's systemd unit: hardened as documented, and valid for systemd itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "agent" / "packaging" / "fleet-agent.service"
# Keys of systemd >= 254; older versions (Debian 12 has 252) ignore them with a warning.
NEWER_KEYS = ("RestartSteps", "RestartMaxDelaySec")


def _service_keys() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        keys.setdefault(f"{section}.{key}", []).append(value)
    return keys


def test_unit_is_hardened_and_restarts_with_backoff() -> None:
    keys = _service_keys()

    def one(key: str) -> str:
        (value,) = keys[f"Service.{key}"]
        return value

    assert one("User") == "fleet-agent"
    assert one("StateDirectory") == "fleet-agent"
    assert one("ProtectSystem") == "strict"
    for flag in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert one(flag) == "yes", flag
    assert one("CapabilityBoundingSet") == ""
    assert set(one("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert one("Restart") == "on-failure"
    assert one("RestartSec") == "5s"
    assert one("RestartMaxDelaySec") == "5min"
    assert keys["Unit.StartLimitBurst"] == ["10"]
    assert one("EnvironmentFile") == "/etc/fleet-agent/agent.env"
    start = one("ExecStart")
    assert start.startswith("/opt/fleet-agent/bin/fleet-agent run --portal ${FLEET_PORTAL}")
    assert "--token-file ${FLEET_TOKEN_FILE}" in start
    assert "--state-dir /var/lib/fleet-agent/state" in start


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this interpreter's agent command.
    command = Path(sys.executable).with_name("fleet-agent")
    unit = tmp_path / "fleet-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/fleet-agent/bin/fleet-agent", str(command)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip()
        and not any(f"Unknown key '{key}'" in line for key in NEWER_KEYS)
        # Without systemd as PID 1 (containers) verify cannot reach the manager.
        and "Failed to connect to bus" not in line
    ]
    assert lines == []
    assert result.returncode == 0
