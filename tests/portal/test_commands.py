"""Portal commands: create_api_token prints a working staff token as its last line."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from portal.models import ApiToken
from portal.tokens import hash_token

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_token_last(staff_user) -> None:  # noqa: ANN001
    out = io.StringIO()
    call_command("create_api_token", "staff", stdout=out)
    token = out.getvalue().strip().splitlines()[-1]
    row = ApiToken.objects.get(user=staff_user)
    assert row.token_hash == hash_token(token)
    assert row.prefix == token[:8]


def test_create_api_token_refuses_unknown_and_non_staff(django_user_model) -> None:  # noqa: ANN001
    with pytest.raises(CommandError, match="There is no user named 'ghost'"):
        call_command("create_api_token", "ghost")
    django_user_model.objects.create_user(username="plain", password="x-long-pass-1")
    with pytest.raises(CommandError, match="must be an active staff user"):
        call_command("create_api_token", "plain")
    assert not ApiToken.objects.exists()
