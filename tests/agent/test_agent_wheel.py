"""The agent's own distribution: its wheel builds and installs alone, without the portal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"
#: What a station gets: the agent, its two dependencies and theirs, and the venv's own tools.
ALLOWED = {"fleet-agent", "cryptography", "cffi", "pycparser", "paho-mqtt", "pip", "setuptools"}


def _run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc


def agent_venv(tmp_path: Path) -> Path:
    """Build the agent's wheel from its folder, install it alone into a new venv; its bin/."""
    wheels, deps, venv = tmp_path / "wheel", tmp_path / "deps", tmp_path / "venv"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        wheels,
        AGENT_DIR,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("fleet_agent-0.1.0-*.whl")
    # The dependencies' wheels (pip's cache or the index); the install below is then offline.
    _run(sys.executable, "-m", "pip", "wheel", "-q", "-w", deps, wheel, cwd=tmp_path)
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    bin_dir = venv / "bin"
    _run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--find-links",
        deps,
        wheel,
        cwd=tmp_path,
    )
    return bin_dir


def installed_names(bin_dir: Path, cwd: Path) -> set[str]:
    listed = _run(bin_dir / "python", "-m", "pip", "list", "--format=json", cwd=cwd)
    return {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}


@pytest.mark.slow
def test_wheel_installs_alone_in_a_clean_venv(tmp_path: Path) -> None:
    bin_dir = agent_venv(tmp_path)
    venv = bin_dir.parent
    names = installed_names(bin_dir, tmp_path)
    assert not names & {"django", "boto3", "botocore", "moto", "requests", "celery"}
    assert {"fleet-agent", "cryptography", "paho-mqtt"} <= names
    assert names <= ALLOWED, f"unexpected packages on a station: {sorted(names - ALLOWED)}"

    where = _run(
        bin_dir / "python", "-c", "import fleet_agent; print(fleet_agent.__file__)", cwd=tmp_path
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    assert "status" in _run(bin_dir / "fleet-agent", "--help", cwd=tmp_path).stdout
    (tmp_path / "state").mkdir()
    _run(bin_dir / "fleet-agent", "status", "--state-dir", tmp_path / "state", cwd=tmp_path)
    version = _run(bin_dir / "python", "-m", "fleet_agent", "--version", cwd=tmp_path)
    assert version.stdout.strip() == "fleet-agent 0.1.0"
