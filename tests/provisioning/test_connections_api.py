"""The /api/v1/connections resource: CRUD, validation, write-only secrets, auth."""

from __future__ import annotations

import json

import pytest

from devices.models import MqttDevice, Station
from portal.models import AuditEvent
from provisioning.connections.models import Connection
from provisioning.connections.selectors import device_topic_patterns
from provisioning.models import AccessKey

from .connection_fixtures import KEY_ID, SECRET, Api, make_cert

pytestmark = pytest.mark.django_db


def no_secrets(response, *pems: str) -> dict | list | None:
    """Every response body: no secret, no private key, no certificate body, no secret key names."""
    text = response.content.decode()
    assert SECRET not in text
    assert "PRIVATE KEY" not in text
    assert "BEGIN CERTIFICATE" not in text
    for key in ("secretAccessKey", "privateKey", "certificate", "private_key_pem"):
        assert f'"{key}":' not in text
    for pem in pems:
        assert pem.strip().splitlines()[1] not in text
    return json.loads(text) if text else None


def test_create_get_list(api: Api, payload, cert_pair) -> None:
    r = api("POST", "/connections", payload())
    body = no_secrets(r, *cert_pair)
    assert r.status_code == 201, body
    assert body["name"] == "lpwan-eu"
    conf = body["configuration"]
    assert conf["endpoint"] == "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
    assert conf["hasPrivateKey"] is conf["hasCertificate"] is conf["hasSecretAccessKey"] is True
    assert len(conf["certificateId"]) == 64
    assert conf["certificateFingerprint"].count(":") == 31
    assert conf["uplinkTopicPattern"] == "things/{thing}/uplink/{point}"

    r = api("GET", f"/connections/{body['id']}")
    assert r.status_code == 200
    assert no_secrets(r, *cert_pair)["configuration"] == conf
    r = api("GET", "/connections")
    assert [c["id"] for c in no_secrets(r, *cert_pair)] == [body["id"]]

    conn = Connection.objects.get()
    assert conn.private_key_pem.strip() == cert_pair[1].strip()
    key = AccessKey.objects.get(access_key_id=KEY_ID)
    assert key.secret == SECRET
    assert key.store_for == "30d"
    assert conn.access_key == key
    # Stored encrypted: the raw column holds no PEM and no secret.
    from django.db import connection as db

    with db.cursor() as cur:
        cur.execute("SELECT private_key_pem, certificate_pem FROM provisioning_connection")
        raw = " ".join(cur.fetchone())
    assert "PRIVATE KEY" not in raw
    assert "CERTIFICATE" not in raw
    assert AuditEvent.objects.filter(action="connection_create").exists()
    assert SECRET not in json.dumps(list(AuditEvent.objects.values("detail")))


def test_endpoint_given_instead_of_prefix(api: Api, payload) -> None:
    r = api(
        "POST",
        "/connections",
        payload(accountPrefix="abc123-ats.iot.eu-central-1.amazonaws.com", region="eu-central-1"),
    )
    assert r.status_code == 201, r.content
    conf = r.json()["configuration"]
    assert conf["accountPrefix"] == "abc123"
    assert conf["endpoint"] == "abc123-ats.iot.eu-central-1.amazonaws.com"
    r = api(
        "POST",
        "/connections",
        payload(
            "other", accountPrefix="abc123-ats.iot.eu-central-1.amazonaws.com", region="us-east-1"
        ),
    )
    assert r.status_code == 422
    assert "region" in r.json()["detail"]


def test_full_replace_keeps_omitted_secrets(api: Api, payload, cert_pair) -> None:
    cid = api("POST", "/connections", payload()).json()["id"]
    new = payload(
        "lpwan-eu-renamed",
        description="",
        downlinkTopicPattern="",
        deviceType="",
        uplinkTopicPattern="fleet/{station}/{device}/up",
        secretAccessKey=...,
        certificate=...,
        privateKey=...,
    )
    r = api("PUT", f"/connections/{cid}", new)
    body = no_secrets(r, *cert_pair)
    assert r.status_code == 200, body
    conf = body["configuration"]
    assert body["name"] == "lpwan-eu-renamed"
    assert conf["description"] == ""
    assert conf["deviceType"] == ""
    assert conf["downlinkTopicPattern"] == ""
    assert conf["uplinkTopicPattern"] == "fleet/{station}/{device}/up"
    assert conf["hasPrivateKey"]
    assert conf["hasCertificate"]
    assert conf["hasSecretAccessKey"]
    conn = Connection.objects.get(pk=cid)
    assert conn.private_key_pem.strip() == cert_pair[1].strip()

    # A new certificate without its key: refused (the stored key does not match it).
    other_cert, other_key = make_cert("other")
    r = api("PUT", f"/connections/{cid}", payload(certificate=other_cert, privateKey=...))
    assert r.status_code == 422
    assert "does not match" in no_secrets(r, other_cert, other_key)["detail"]
    # Both: replaced.
    r = api("PUT", f"/connections/{cid}", payload(certificate=other_cert, privateKey=other_key))
    assert r.status_code == 200
    assert Connection.objects.get(pk=cid).private_key_pem.strip() == other_key.strip()
    # Empty strings remove the pair.
    r = api("PUT", f"/connections/{cid}", payload(certificate="", privateKey=""))
    conf = no_secrets(r)["configuration"]
    assert conf["hasCertificate"] is False
    assert conf["hasPrivateKey"] is False
    assert conf["certificateFingerprint"] is None


def test_new_secret_on_put_restores_a_purged_key(api: Api, payload) -> None:
    cid = api("POST", "/connections", payload()).json()["id"]
    AccessKey.objects.update(secret=None)
    r = api("GET", f"/connections/{cid}")
    assert r.json()["configuration"]["hasSecretAccessKey"] is False
    r = api("PUT", f"/connections/{cid}", payload(accessKeyStoreFor="1h"))
    assert r.json()["configuration"]["hasSecretAccessKey"] is True
    assert AccessKey.objects.get().store_for == "1h"


def test_unknown_access_key_needs_its_secret(api: Api, payload) -> None:
    r = api("POST", "/connections", payload(secretAccessKey=...))
    assert r.status_code == 422
    assert "secretAccessKey" in r.json()["detail"]
    assert not Connection.objects.exists()
    # Once stored, another connection can use the key by id alone.
    assert api("POST", "/connections", payload()).status_code == 201
    r = api("POST", "/connections", payload("second", secretAccessKey=...))
    assert r.status_code == 201


def test_duplicate_name_conflict(api: Api, payload) -> None:
    assert api("POST", "/connections", payload()).status_code == 201
    r = api("POST", "/connections", payload())
    assert r.status_code == 409
    assert r.json()["code"] == "connection_exists"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("uplinkTopicPattern", "things/+/uplink", "wildcards"),
        ("uplinkTopicPattern", "things/{thing}/#", "wildcards"),
        ("uplinkTopicPattern", "a/b/c/d/e/f/g/h/i", "slashes"),
        ("uplinkTopicPattern", "x" * 257, "256 bytes"),
        ("uplinkTopicPattern", "things/" + "é" * 125, "256 bytes"),
        ("uplinkTopicPattern", "$aws/things/{thing}/shadow/update", "$aws"),
        ("uplinkTopicPattern", "$SYS/x", "reserves"),
        ("uplinkTopicPattern", "/things/{thing}", "empty level"),
        ("uplinkTopicPattern", "things//{thing}", "empty level"),
        ("uplinkTopicPattern", "things/{thing}/", "empty level"),
        ("uplinkTopicPattern", "things/{sensor}/up", "unknown placeholder"),
        ("uplinkTopicPattern", "things/{device/up", "unmatched brace"),
        ("uplinkTopicPattern", "things/\u0000/up", "control character"),
        ("uplinkTopicPattern", "", "empty"),
        ("downlinkTopicPattern", "things/{thing}/down/{point}", "{point}"),
        ("downlinkTopicPattern", "things/a+/down", "whole level"),
        ("downlinkTopicPattern", "things/#/down", "last level"),
        ("downlinkTopicPattern", "$aws/things/{thing}/jobs/notify", "$aws"),
        ("downlinkTopicPattern", "a/b/c/d/e/f/g/h/i", "slashes"),
        ("region", "mars-north-1", "region"),
        ("accountPrefix", "Not_A_Prefix", "prefix"),
        ("deviceType", "bad type!", "thing type"),
        ("accessKeyId", "AKIA123", "accessKeyId"),
        ("secretAccessKey", "short", "secret access key"),
        ("accessKeyStoreFor", "2y", "storage period"),
        ("certificate", "not a pem", "PEM X.509"),
        (
            "privateKey",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "PEM private",
        ),
        ("certificateId", "f" * 64, "does not match"),
    ],
)
def test_bad_input_is_a_422_with_a_sentence(api: Api, payload, field, value, words) -> None:
    r = api("POST", "/connections", payload(**{field: value}))
    body = no_secrets(r)
    assert r.status_code == 422, body
    assert body["code"] in {"invalid_connection", "invalid_request"}
    assert words.lower() in body["detail"].lower(), body["detail"]
    assert not Connection.objects.exists()
    assert not AccessKey.objects.exists(), "a refused request must not store the secret"


def test_certificate_and_key_must_match(api: Api, payload) -> None:
    cert, _ = make_cert("a")
    _, key = make_cert("b")
    r = api("POST", "/connections", payload(certificate=cert, privateKey=key))
    assert r.status_code == 422
    assert "does not match" in no_secrets(r, cert, key)["detail"]
    r = api("POST", "/connections", payload(privateKey=...))
    assert r.status_code == 422
    assert "privateKey is missing" in r.json()["detail"]


def test_valid_patterns_accepted(api: Api, payload) -> None:
    r = api(
        "POST",
        "/connections",
        payload(
            uplinkTopicPattern="things/{DevEUI}/uplink",
            downlinkTopicPattern="things/{station}/{device}/down/+/#",
        ),
    )
    assert r.status_code == 201, r.content


def test_garbage_and_wrong_types_are_4xx(api: Api, payload) -> None:
    for raw in (b"{", b"[]", b"null", b"\xff\xfe", b'{"name": 5}', b"x" * 3_000_000):
        r = api("POST", "/connections", raw=raw)
        assert 400 <= r.status_code < 500, (raw[:20], r.status_code)
        assert set(r.json()) == {"code", "detail"}
    bad = payload()
    bad["configuration"]["region"] = 7
    assert api("POST", "/connections", bad).status_code == 422
    bad = payload()
    bad["configuration"] = "x"
    assert api("POST", "/connections", bad).status_code == 422
    assert api("GET", "/connections/abc").status_code == 422
    assert api("GET", f"/connections/{2**70}").status_code == 422
    assert api("GET", "/connections/999").status_code == 404
    assert api("DELETE", "/connections/999").status_code == 404


def test_auth(payload, staff_user, staff_token) -> None:
    assert Api(None)("GET", "/connections").status_code == 401
    assert Api("nonsense")("POST", "/connections", payload()).status_code == 401
    staff_user.is_staff = False
    staff_user.save()
    r = Api(staff_token)("GET", "/connections")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


def test_delete_refused_while_bound_then_allowed(api: Api, payload) -> None:
    cid = api("POST", "/connections", payload()).json()["id"]
    station = Station.objects.create(name="st-001", token_hash="h1", token_prefix="p")
    dev = MqttDevice.objects.create(station=station, name="aws")
    MqttDevice.objects.create(station=station, name="other")

    r = api(
        "PUT", f"/connections/{cid}/devices", {"devices": [{"station": "st-001", "device": "aws"}]}
    )
    assert r.status_code == 200, r.content
    assert r.json()["devices"] == [{"station": "st-001", "device": "aws"}]
    dev.refresh_from_db()
    assert dev.connection_id == cid
    assert device_topic_patterns(dev) == {
        "uplink_topic": "things/{thing}/uplink/{point}",
        "downlink_topic": "things/{thing}/downlink",
        "connection": "lpwan-eu",
        "endpoint": "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com",
    }
    assert api("GET", f"/connections/{cid}").json()["deviceCount"] == 1

    r = api(
        "PUT", f"/connections/{cid}/devices", {"devices": [{"station": "st-001", "device": "nope"}]}
    )
    assert r.status_code == 422
    assert "st-001/nope" in r.json()["detail"]

    r = api("DELETE", f"/connections/{cid}")
    assert r.status_code == 409
    assert r.json()["code"] == "connection_in_use"

    assert api("PUT", f"/connections/{cid}/devices", {"devices": []}).json()["devices"] == []
    dev.refresh_from_db()
    assert dev.connection_id is None
    assert device_topic_patterns(dev)["connection"] is None
    assert api("DELETE", f"/connections/{cid}").status_code == 204
    assert api("GET", f"/connections/{cid}").status_code == 404
    assert AccessKey.objects.exists(), "deleting a connection keeps the access key"


def test_downlink_empty_means_no_subscription(api: Api, payload) -> None:
    cid = api("POST", "/connections", payload(downlinkTopicPattern="")).json()["id"]
    station = Station.objects.create(name="st-002", token_hash="h2", token_prefix="p")
    dev = MqttDevice.objects.create(station=station, name="aws", connection_id=cid)
    assert device_topic_patterns(dev)["downlink_topic"] is None


def test_new_access_key_is_stored_by_the_access_key_service(api: Api, payload) -> None:
    """A new key goes through access_key_create (its audit); a known key is updated in place."""
    cid = api("POST", "/connections", payload()).json()["id"]
    key = AccessKey.objects.get(access_key_id=KEY_ID)
    assert key.description == "Stored with a connection."
    created = AuditEvent.objects.get(action="access_key_create")
    assert created.object_id == str(key.pk)
    assert not AuditEvent.objects.filter(action="access_key_store").exists()

    r = api("PUT", f"/connections/{cid}", payload(accessKeyStoreFor="1d"))
    assert r.status_code == 200, r.content
    assert AccessKey.objects.get().pk == key.pk
    assert AccessKey.objects.get().store_for == "1d"
    assert AuditEvent.objects.filter(action="access_key_store").count() == 1
    assert SECRET not in json.dumps(list(AuditEvent.objects.values("detail")))
