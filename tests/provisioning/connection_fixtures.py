"""Fixtures for the connection and claim tests: staff API tokens, certificates, bodies.

Kept out of conftest.py (which only re-exports them) so that merging with other
provisioning fixtures is a one-line change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from portal.services import api_token_create
from tests.signing.conftest import cert_pem, key_pem
from tests.signing.conftest import make_cert as self_signed

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def make_cert(cn: str = "connector") -> tuple[str, str]:
    """A self-signed certificate and its unencrypted private key (PEM)."""
    cert, key = self_signed(ca=False, key_cert_sign=False, days=30, cn=cn)
    return cert_pem(cert), key_pem(key)


@pytest.fixture(scope="session")
def cert_pair() -> tuple[str, str]:
    return make_cert()


CONNECTION_PERMISSIONS = [f"{a}_connection" for a in ("view", "add", "change", "delete")]


def grant(user: Any, *codenames: str) -> None:
    """Give ``user`` the provisioning permissions named (e.g. ``view_connection``)."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="provisioning", codename__in=codenames)
    )


@pytest.fixture
def staff_token(staff_user: Any) -> str:
    """A staff token whose user may view, add, change and delete connections."""
    grant(staff_user, *CONNECTION_PERMISSIONS)
    return api_token_create(username=staff_user.username)[1]


class Api:
    """A Django test client that sends the bearer token and JSON."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, body: Any = None, raw: bytes | None = None):
        kwargs: dict[str, Any] = {"headers": self.headers}
        if raw is not None or body is not None:
            import json

            kwargs["data"] = raw if raw is not None else json.dumps(body)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method.lower())(f"/api/v1{path}", **kwargs)


@pytest.fixture
def api(staff_token: str) -> Api:
    return Api(staff_token)


@pytest.fixture
def payload(cert_pair: tuple[str, str]) -> Callable[..., dict[str, Any]]:
    """A valid connection body; keyword arguments override configuration keys."""

    def build(name: str = "lpwan-eu", **config: Any) -> dict[str, Any]:
        cert, key = cert_pair
        body = {
            "description": "EU connector",
            "uplinkTopicPattern": "things/{thing}/uplink/{point}",
            "downlinkTopicPattern": "things/{thing}/downlink",
            "deviceType": "lorawan-sensor",
            "region": "eu-west-1",
            "accountPrefix": "a1b2c3d4e5f6g7",
            "accessKeyId": KEY_ID,
            "secretAccessKey": SECRET,
            "certificateId": "",
            "certificate": cert,
            "privateKey": key,
        }
        body.update(config)
        body = {k: v for k, v in body.items() if v is not ...}
        return {"name": name, "configuration": body}

    return build


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Users are created in most tests here; PBKDF2's cost is not what they test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
