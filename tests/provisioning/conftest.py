"""Fixtures for the provisioning tests: access keys, an enabled AWS service, moto."""
from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterator

import pytest

ALPHABET = string.ascii_letters + string.digits + "/+"


def make_secret() -> str:
    """A random, AWS-shaped secret (40 chars), unique per test so a leak search is exact."""
    return "".join(secrets.choice(ALPHABET) for _ in range(40))


def make_key_id(prefix: str = "AKIA") -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                            for _ in range(16))


@pytest.fixture
def secret() -> str:
    return make_secret()


@pytest.fixture
def access_key_factory(db: None) -> Callable[..., object]:
    from provisioning import services

    def create(*, secret: str | None = None, store_for: str = "1d", **kw: object) -> object:
        return services.access_key_create(
            access_key_id=str(kw.pop("access_key_id", make_key_id())),
            secret=secret or make_secret(),
            store_for=store_for,
            **kw,  # type: ignore[arg-type]
        )

    return create


@pytest.fixture
def aws_enabled(db: None) -> object:
    from provisioning.services import aws_service_update

    return aws_service_update(enabled=True, region="eu-west-1")


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS; no request leaves the machine."""
    from django.conf import settings
    from moto import mock_aws

    monkeypatch.setattr(settings, "AWS_ENDPOINT_URL", None)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield
