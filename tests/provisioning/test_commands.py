"""Management commands: add_access_key (secret never argv), purge_access_keys."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from provisioning.models import AccessKey
from tests.conftest import ROOT, subprocess_env

from .conftest import make_key_id


@pytest.mark.django_db
def test_add_access_key_reads_secret_from_stdin(monkeypatch, secret: str, caplog) -> None:  # noqa: ANN001
    caplog.set_level("DEBUG")
    monkeypatch.setattr(sys, "stdin", io.StringIO(secret + "\n"))
    out = io.StringIO()
    key_id = make_key_id()
    call_command("add_access_key", "--id", key_id, "--store-for", "8h", stdout=out)
    key = AccessKey.objects.get(access_key_id=key_id)
    assert key.secret == secret
    assert key.store_for == "8h"
    assert f"Stored access key {key_id}; it will be purged at" in out.getvalue()
    assert secret not in out.getvalue()
    assert secret not in caplog.text


@pytest.mark.django_db
def test_add_access_key_refuses_bad_input_with_one_sentence(monkeypatch, secret: str) -> None:  # noqa: ANN001
    monkeypatch.setattr(sys, "stdin", io.StringIO("too-short\n"))
    with pytest.raises(CommandError, match="exactly 40 characters") as info:
        call_command("add_access_key", "--id", make_key_id(), "--store-for", "1d")
    assert "too-short" not in str(info.value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="No secret access key was given"):
        call_command("add_access_key", "--id", make_key_id(), "--store-for", "1d")
    monkeypatch.setattr(sys, "stdin", io.StringIO(secret))
    with pytest.raises(CommandError, match="AKIA or ASIA"):
        call_command("add_access_key", "--id", "AKIAshort", "--store-for", "1d")
    assert not AccessKey.objects.exists()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_add_access_key_in_a_subprocess_piped_and_bad_period(secret: str) -> None:
    def add_access_key(key_id: str, period: str) -> subprocess.CompletedProcess[str]:
        """``manage.py add_access_key`` with the secret piped on stdin, as a script does."""
        return subprocess.run(
            [sys.executable, "manage.py", "add_access_key", "--id", key_id, "--store-for", period],
            input=secret + "\n",
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    key_id = make_key_id()
    ok = add_access_key(key_id, "1h")
    assert ok.returncode == 0, ok.stderr
    assert secret not in ok.stdout + ok.stderr
    assert AccessKey.objects.get(access_key_id=key_id).secret == secret
    bad = add_access_key(make_key_id(), "90d")
    assert bad.returncode != 0
    assert "invalid choice: '90d'" in bad.stderr
    dup = add_access_key(key_id, "1h")
    assert dup.returncode == 1
    assert dup.stderr.strip() == (
        f"CommandError: Access key {key_id} is already stored; delete it first to enter it again."
    )


@pytest.mark.django_db
def test_purge_access_keys_command(access_key_factory) -> None:  # noqa: ANN001
    old = access_key_factory(store_for="1h", now=timezone.now() - timedelta(hours=1, seconds=1))
    fresh = access_key_factory(store_for="1h")
    out = io.StringIO()
    call_command("purge_access_keys", stdout=out)
    assert out.getvalue().strip() == "Purged 1 access key."
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert not old.is_stored
    assert fresh.is_stored
    out = io.StringIO()
    call_command("purge_access_keys", stdout=out)
    assert out.getvalue().strip() == "Purged 0 access keys."
