"""Connections in the admin: saved through the service, secrets never rendered."""

from __future__ import annotations

import pytest
from django.http import HttpResponse

from provisioning.connections.models import Connection

from .connection_fixtures import KEY_ID, SECRET

pytestmark = pytest.mark.django_db


def form_data(cert_pair, **over):
    cert, key = cert_pair
    data = {
        "name": "admin-conn",
        "description": "",
        "region": "eu-west-1",
        "account_prefix": "a1b2c3d4e5f6g7",
        "device_type": "",
        "certificate_id": "",
        "uplink_topic_pattern": "things/{thing}/up",
        "downlink_topic_pattern": "",
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET,
        "access_key_store_for": "",
        "certificate": cert,
        "private_key": key,
    }
    data.update(over)
    return data


def test_add_change_never_render_secrets(client, superuser, cert_pair) -> None:
    client.force_login(superuser)
    assert client.get("/admin/provisioning/connection/add/").status_code == 200
    assert client.get("/admin/provisioning/claimsetup/add/").status_code == 200
    r = client.post("/admin/provisioning/connection/add/", form_data(cert_pair))
    assert r.status_code == 302, r.content.decode()[:3000]
    conn = Connection.objects.get()
    assert conn.has_private_key
    assert conn.access_key.secret == SECRET
    page = client.get(f"/admin/provisioning/connection/{conn.pk}/change/").content.decode()
    assert SECRET not in page
    assert "PRIVATE KEY" not in page
    assert cert_pair[0].splitlines()[1] not in page
    assert conn.endpoint in page

    # Change without secrets keeps them; a bad pattern shows an error next to the field.
    def change_pattern(pattern: str) -> HttpResponse:
        no_secrets = {"secret_access_key": "", "certificate": "", "private_key": ""}
        return client.post(
            f"/admin/provisioning/connection/{conn.pk}/change/",
            form_data(cert_pair, **no_secrets, uplink_topic_pattern=pattern),
        )

    r = change_pattern("things/+/up")
    assert r.status_code == 200
    assert "wildcards" in r.content.decode()
    r = change_pattern("fleet/{device}/up")
    assert r.status_code == 302
    conn.refresh_from_db()
    assert conn.uplink_topic_pattern == "fleet/{device}/up"
    assert conn.has_private_key
    assert "PRIVATE KEY" not in client.get("/admin/provisioning/connection/").content.decode()
