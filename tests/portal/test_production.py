"""Production mode: passes `check --deploy` with its secrets set, refuses to start without."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.conftest import ROOT

pytestmark = pytest.mark.integration  # every test here runs manage.py in a subprocess


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "SECRET_KEY",
            "FIELD_ENCRYPTION_KEY",
            "ALLOWED_HOSTS",
            "DEBUG",
        }
    }
    env.update(
        PORTAL_PRODUCTION="true",
        PORTAL_DATA_DIR=str(tmp_path),
        SECRET_KEY=secrets.token_urlsafe(64),
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/15",
        ALLOWED_HOSTS="portal.example.com",
        PYTHONPATH=str(ROOT),
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_without_warnings(tmp_path: Path) -> None:
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL"])
def test_production_refuses_without_its_secrets(tmp_path: Path, missing: str) -> None:
    result = manage(production_env(tmp_path, **{missing: ""}), "check")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: Production settings (PORTAL_PRODUCTION=true) need these environment "
        f"variables set: {missing}."
    )
    assert not (tmp_path / "secrets.env").exists()  # no dev secrets generated in production


def test_production_refuses_debug(tmp_path: Path) -> None:
    result = manage(production_env(tmp_path, DEBUG="true"), "check")
    assert result.returncode == 1
    assert "DEBUG must be off in production" in result.stderr


def test_malformed_encryption_key_is_one_sentence(tmp_path: Path) -> None:
    result = manage(production_env(tmp_path, FIELD_ENCRYPTION_KEY="not-a-key"), "check")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: FIELD_ENCRYPTION_KEY entry 1 is not a Fernet key")
    assert "Traceback" not in result.stderr
