"""Commands: add_station, add_signing_profile, approve_requests (secrets never from argv)."""

from __future__ import annotations

from io import StringIO
from typing import Any

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


def _add_profile(*extra: str, ca_alias: str = "test-ca", country: str = "DE") -> StringIO:
    out = StringIO()
    call_command(
        "add_signing_profile",
        *("--name", "p", "--ca-alias", ca_alias, "--country", country, *extra),
        stdout=out,
    )
    return out


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "change", "refusal"),
    [
        (None, {}, "CA_PASSWORD"),
        ("wrong-password", {}, "does not unlock"),
        (CA_PASSWORD, {"extra": ("--cn-template", "{station}")}, "must contain"),
        (CA_PASSWORD, {"country": "Germany"}, "two-letter"),
        (CA_PASSWORD, {"ca_alias": "nope"}, "no CA"),
        (CA_PASSWORD, {"extra": ("--cn-template", "{device}.{serial}")}, "found '.'"),
    ],
    ids=["no-password", "wrong-password", "cn-template", "country", "ca-alias", "separator"],
)
def test_add_signing_profile_refusals_are_one_sentence_and_create_nothing(
    ca,  # noqa: ANN001
    monkeypatch,  # noqa: ANN001
    password: str | None,
    change: dict[str, Any],
    refusal: str,
) -> None:
    if password is None:
        monkeypatch.delenv("CA_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("CA_PASSWORD", password)
    options = {k: v for k, v in change.items() if k != "extra"}
    with pytest.raises(CommandError, match=refusal):
        _add_profile(*change.get("extra", ()), **options)
    assert not SigningProfile.objects.filter(name="p").exists()


@pytest.mark.django_db
def test_add_signing_profile_creates_a_default_profile(ca, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("CA_PASSWORD", CA_PASSWORD)
    out = _add_profile("--cn-template", "{device}:{serial}", "--days", "90")
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
