"""The connections staff API: per-endpoint model permissions; the reference accountPrefix forms."""

from __future__ import annotations

import pytest

from portal.services import api_token_create
from provisioning.connections.models import Connection

from .connection_fixtures import Api, grant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "given",
    [
        "a2shubp7zpiozr-ats",
        "a2shubp7zpiozr",
        "A2SHUBP7ZPIOZR-ATS",
        "a2shubp7zpiozr-ats.iot.eu-west-1.amazonaws.com",
    ],
)
def test_account_prefix_in_every_reference_form(api: Api, payload, given: str) -> None:
    r = api("POST", "/connections", payload(accountPrefix=given, region="eu-west-1"))
    assert r.status_code == 201, r.content
    conf = r.json()["configuration"]
    assert conf["accountPrefix"] == "a2shubp7zpiozr"
    assert conf["endpoint"] == "a2shubp7zpiozr-ats.iot.eu-west-1.amazonaws.com"


def test_a_suffix_other_than_ats_is_still_refused(api: Api, payload) -> None:
    r = api("POST", "/connections", payload(accountPrefix="a2shubp7zpiozr-xyz"))
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_connection"


def _token_with(django_user_model, username: str, *codenames: str) -> Api:  # noqa: ANN001
    user = django_user_model.objects.create_user(username=username, is_staff=True)
    grant(user, *codenames)
    return Api(api_token_create(username=username)[1])


def test_each_endpoint_needs_its_model_permission(api: Api, payload, django_user_model) -> None:  # noqa: ANN001
    cid = api("POST", "/connections", payload()).json()["id"]
    bare = _token_with(django_user_model, "no-perms")
    calls = [
        ("GET", "/connections", None),
        ("POST", "/connections", payload("other")),
        ("GET", f"/connections/{cid}", None),
        ("PUT", f"/connections/{cid}", payload()),
        ("DELETE", f"/connections/{cid}", None),
        ("GET", f"/connections/{cid}/devices", None),
        ("PUT", f"/connections/{cid}/devices", {"devices": []}),
    ]
    for method, path, body in calls:
        r = bare(method, path, body)
        assert r.status_code == 403, (method, path, r.content)
        assert r.json()["code"] == "forbidden"
        assert "permission" in r.json()["detail"]
    assert Connection.objects.count() == 1

    viewer = _token_with(django_user_model, "viewer", "view_connection")
    assert viewer("GET", "/connections").status_code == 200
    assert viewer("GET", f"/connections/{cid}/devices").status_code == 200
    assert viewer("POST", "/connections", payload("other")).status_code == 403
    assert viewer("PUT", f"/connections/{cid}", payload()).status_code == 403
    assert viewer("DELETE", f"/connections/{cid}").status_code == 403

    changer = _token_with(django_user_model, "changer", "change_connection")
    assert changer("PUT", f"/connections/{cid}", payload(description="new")).status_code == 200
    assert changer("DELETE", f"/connections/{cid}").status_code == 403
    deleter = _token_with(django_user_model, "deleter", "delete_connection")
    assert deleter("DELETE", f"/connections/{cid}").status_code == 204
    assert not Connection.objects.exists()


def test_a_superuser_token_has_every_permission(superuser, payload) -> None:  # noqa: ANN001
    admin = Api(api_token_create(username=superuser.username)[1])
    r = admin("POST", "/connections", payload())
    assert r.status_code == 201
    assert admin("GET", "/connections").status_code == 200
    assert admin("DELETE", f"/connections/{r.json()['id']}").status_code == 204
