"""Key rotation: re-encrypt with a new first key, then the old key can be dropped."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import connection

from tests.conftest import ROOT, subprocess_env


def raw_secret(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM provisioning_accesskey WHERE id = %s", [pk])
        return cursor.fetchone()[0]


pytestmark = pytest.mark.integration  # every test here runs manage.py in a subprocess


@pytest.mark.django_db(transaction=True)
def test_reencrypt_with_new_key_then_old_key_can_go() -> None:
    from provisioning.aws.services import access_key_create

    old = settings.FIELD_ENCRYPTION_KEY
    assert isinstance(old, str)
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    key = access_key_create(access_key_id="AKIAROTATIONTEST0001", secret=secret, store_for="1d")
    new = Fernet.generate_key().decode()
    run = subprocess.run(
        [sys.executable, "manage.py", "reencrypt_secrets"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(FIELD_ENCRYPTION_KEY=f"{new},{old}"),
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "provisioning.AccessKey: 1" in run.stdout
    assert "portal.EncryptionCanary: 1" in run.stdout
    assert secret not in run.stdout + run.stderr
    ciphertext = raw_secret(key.pk)
    assert Fernet(new.encode()).decrypt(ciphertext.encode()).decode() == secret
    with pytest.raises(InvalidToken):  # the old key no longer opens it
        Fernet(old.encode()).decrypt(ciphertext.encode())
    # The portal now starts with the new key alone.
    check = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(FIELD_ENCRYPTION_KEY=new),
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.django_db(transaction=True)
def test_reencrypt_refuses_when_a_value_cannot_be_decrypted() -> None:
    from provisioning.aws.services import access_key_create

    key = access_key_create(
        access_key_id="AKIAROTATIONTEST0002",
        secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE2",
        store_for="1d",
    )
    before = raw_secret(key.pk)
    stranger = Fernet.generate_key().decode()
    # Only the canary check would stop a wrong key; skip checks to reach the command itself.
    run = subprocess.run(
        [sys.executable, "manage.py", "reencrypt_secrets", "--skip-checks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(FIELD_ENCRYPTION_KEY=stranger),
        timeout=60,
    )
    assert run.returncode == 1
    assert "cannot be decrypted with any FIELD_ENCRYPTION_KEY entry" in run.stderr
    assert "Nothing was changed." in run.stderr
    assert raw_secret(key.pk) == before
