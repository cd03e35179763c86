"""The portal starts only with a usable encryption key; the API answers in its error shape."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from portal.models import EncryptionCanary
from tests.conftest import ROOT, subprocess_env


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_wrong_field_encryption_key_stops_the_portal() -> None:
    assert EncryptionCanary.objects.get().value == EncryptionCanary.PLAINTEXT
    wrong = Fernet.generate_key().decode()
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(FIELD_ENCRYPTION_KEY=wrong),
        timeout=60,
    )
    assert result.returncode != 0
    expected = "FIELD_ENCRYPTION_KEY cannot decrypt the secrets stored in this database"
    assert expected in result.stderr


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_rotated_key_list_still_starts() -> None:
    from django.conf import settings

    new = Fernet.generate_key().decode()
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(FIELD_ENCRYPTION_KEY=f"{new},{settings.FIELD_ENCRYPTION_KEY}"),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_api_schema_is_served(client) -> None:  # noqa: ANN001
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Fleet onboarding portal API"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_AUTHORIZATION": "Bearer not-a-token"}], ids=["no-token", "bad-token"]
)
def test_api_bad_token_uses_error_shape(client, headers: dict[str, str]) -> None:  # noqa: ANN001
    response = client.get("/api/v1/agent/config", **headers)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "code": "unauthorized",
        "detail": "A valid bearer token is required.",
    }


def test_api_unknown_route_uses_error_shape(client) -> None:  # noqa: ANN001
    response = client.get("/api/v1/no-such-route")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert set(body) == {"code", "detail"}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "import portal.wsgi"],
        [
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "-P",
            "solo",
            "-Q",
            "default",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        [
            "-m",
            "celery",
            "-A",
            "portal",
            "beat",
            "--pidfile=",
            "-S",
            "django_celery_beat.schedulers:DatabaseScheduler",
        ],
    ],
    ids=["wsgi", "worker", "beat"],
)
def test_wrong_key_stops_web_worker_and_beat(argv: list[str]) -> None:
    wrong = Fernet.generate_key().decode()
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(FIELD_ENCRYPTION_KEY=wrong),
        timeout=60,
    )
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY cannot decrypt the secrets stored in this database" in (
        result.stderr
    )
