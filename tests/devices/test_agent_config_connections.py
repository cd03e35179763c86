"""GET /api/v1/agent/config carries a bound connection's topic patterns.

Binding goes through the staff connections API, as an operator would do it; the station
sees the change through the ETag it already holds.
"""

from __future__ import annotations

import pytest

from tests.devices.factories import bearer, make_device, make_station
from tests.provisioning.connection_fixtures import Api

pytestmark = pytest.mark.django_db
CONFIG = "/api/v1/agent/config"
UP = "fleet/{station}/{device}/up/{point}"
DOWN = "fleet/{station}/{device}/down/+"


def _config(client, token: str, etag: str | None = None):  # noqa: ANN001, ANN202
    headers = bearer(token)
    if etag:
        headers["HTTP_IF_NONE_MATCH"] = etag
    return client.get(CONFIG, **headers)


def test_binding_changes_the_etag_and_carries_the_patterns(client, api: Api, payload) -> None:  # noqa: ANN001
    station, token = make_station("st-7")
    make_device(station, endpoint="")
    make_device(station, name="own", endpoint="own-ats.iot.eu-west-1.amazonaws.com")
    first = _config(client, token)
    etag0 = first["ETag"]
    assert [d["uplink_topic"] for d in first.json()["devices"]] == [
        "things/{thing}/uplink/{point}"
    ] * 2

    r = api("POST", "/connections", payload(uplinkTopicPattern=UP, downlinkTopicPattern=DOWN))
    assert r.status_code == 201, r.content
    cid = r.json()["id"]
    # Creating a connection binds nothing: the station's configuration is unchanged.
    assert _config(client, token, etag0).status_code == 304

    r = api(
        "PUT",
        f"/connections/{cid}/devices",
        {"devices": [{"station": "st-7", "device": "aws"}, {"station": "st-7", "device": "own"}]},
    )
    assert r.status_code == 200, r.content
    bound = _config(client, token, etag0)
    assert bound.status_code == 200
    etag1 = bound["ETag"]
    assert etag1 != etag0
    by_name = {d["name"]: d for d in bound.json()["devices"]}
    for entry in by_name.values():
        assert entry["uplink_topic"] == UP
        assert entry["downlink_topic"] == DOWN
        assert entry["heartbeat_topic"] == "things/{thing}/heartbeat"
    # No endpoint of its own: the connection's account endpoint; its own endpoint wins.
    assert by_name["aws"]["endpoint"] == "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
    assert by_name["own"]["endpoint"] == "own-ats.iot.eu-west-1.amazonaws.com"
    assert _config(client, token, etag1).status_code == 304

    # A PUT on the connection changes the ETag, even one that leaves the patterns alone.
    r = api("PUT", f"/connections/{cid}", payload(uplinkTopicPattern=UP, downlinkTopicPattern=DOWN))
    assert r.status_code == 200, r.content
    same_patterns = _config(client, token, etag1)
    assert same_patterns.status_code == 200
    etag2 = same_patterns["ETag"]
    assert etag2 != etag1
    assert same_patterns.json() == bound.json()

    # New patterns reach the station; an empty downlink pattern means "subscribe to nothing".
    r = api(
        "PUT",
        f"/connections/{cid}",
        payload(uplinkTopicPattern="x/{device}/{point}", downlinkTopicPattern=""),
    )
    assert r.status_code == 200, r.content
    changed = _config(client, token, etag2)
    assert changed.status_code == 200
    assert {d["uplink_topic"] for d in changed.json()["devices"]} == {"x/{device}/{point}"}
    assert {d["downlink_topic"] for d in changed.json()["devices"]} == {None}

    # Unbinding brings the defaults back.
    assert api("PUT", f"/connections/{cid}/devices", {"devices": []}).status_code == 200
    unbound = _config(client, token, changed["ETag"])
    assert unbound.status_code == 200
    assert unbound.json() == first.json()


def test_other_stations_do_not_see_the_binding(client, api: Api, payload) -> None:  # noqa: ANN001
    station, token = make_station("st-a")
    other, other_token = make_station("st-b")
    make_device(station)
    make_device(other)
    other_etag = _config(client, other_token)["ETag"]
    cid = api("POST", "/connections", payload(uplinkTopicPattern=UP)).json()["id"]
    api("PUT", f"/connections/{cid}/devices", {"devices": [{"station": "st-a", "device": "aws"}]})
    assert _config(client, token).json()["devices"][0]["uplink_topic"] == UP
    assert _config(client, other_token, other_etag).status_code == 304
