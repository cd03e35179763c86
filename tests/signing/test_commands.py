"""Commands: add_station, add_signing_profile, approve_requests (secrets never from argv)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from devices.selectors import station_for_token
from signing.models import OnboardingRequest, SigningProfile
from tests.signing.conftest import CA_PASSWORD


@pytest.mark.django_db
def test_add_station_prints_the_token_last_once() -> None:
    out = StringIO()
    call_command("add_station", "st-cmd", stdout=out)
    lines = out.getvalue().strip().splitlines()
    token = lines[-1]
    assert station_for_token(token).name == "st-cmd"
    assert out.getvalue().count(token) == 1
    with pytest.raises(CommandError, match="already exists"):
        call_command("add_station", "st-cmd", stdout=StringIO())
    with pytest.raises(CommandError, match="letters, digits"):
        call_command("add_station", "bad name!", stdout=StringIO())


@pytest.mark.django_db
def test_add_signing_profile_takes_the_password_from_the_environment(ca, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("CA_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="CA_PASSWORD"):
        call_command(
            "add_signing_profile",
            "--name",
            "p",
            "--ca-alias",
            "test-ca",
            "--country",
            "DE",
            stdout=StringIO(),
        )
    monkeypatch.setenv("CA_PASSWORD", "wrong-password")
    with pytest.raises(CommandError, match="does not unlock"):
        call_command(
            "add_signing_profile",
            "--name",
            "p",
            "--ca-alias",
            "test-ca",
            "--country",
            "DE",
            stdout=StringIO(),
        )
    monkeypatch.setenv("CA_PASSWORD", CA_PASSWORD)
    with pytest.raises(CommandError, match="must contain"):
        call_command(
            "add_signing_profile",
            "--name",
            "p",
            "--ca-alias",
            "test-ca",
            "--country",
            "DE",
            "--cn-template",
            "{station}",
            stdout=StringIO(),
        )
    with pytest.raises(CommandError, match="two-letter"):
        call_command(
            "add_signing_profile",
            "--name",
            "p",
            "--ca-alias",
            "test-ca",
            "--country",
            "Germany",
            stdout=StringIO(),
        )
    with pytest.raises(CommandError, match="no CA"):
        call_command(
            "add_signing_profile",
            "--name",
            "p",
            "--ca-alias",
            "nope",
            "--country",
            "DE",
            stdout=StringIO(),
        )
    with pytest.raises(CommandError, match="found '.'"):
        call_command(
            "add_signing_profile",
            "--name",
            "p",
            "--ca-alias",
            "test-ca",
            "--country",
            "DE",
            "--cn-template",
            "{device}.{serial}",
            stdout=StringIO(),
        )
    assert not SigningProfile.objects.filter(name="p").exists()


@pytest.mark.django_db
def test_add_signing_profile_creates_a_default_profile(ca, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("CA_PASSWORD", CA_PASSWORD)
    out = StringIO()
    call_command(
        "add_signing_profile",
        "--name",
        "p",
        "--ca-alias",
        "test-ca",
        "--country",
        "DE",
        "--cn-template",
        "{device}:{serial}",
        "--days",
        "90",
        stdout=out,
    )
    profile = SigningProfile.objects.get(name="p")
    assert profile.validity_days == 90
    assert profile.is_default
    assert profile.ca_password == CA_PASSWORD
    assert CA_PASSWORD not in out.getvalue()


@pytest.mark.django_db
def test_approve_requests_refuses_bad_arguments() -> None:
    with pytest.raises(CommandError, match="ids or --all-pending"):
        call_command("approve_requests", stdout=StringIO())
    with pytest.raises(CommandError, match="no onboarding request 99"):
        call_command("approve_requests", "99", stdout=StringIO())
    assert OnboardingRequest.objects.count() == 0
