"""NUL characters in API bodies are a 422 with a sentence, never a 500 (PostgreSQL).

Found by the schemathesis run of the connections API on PostgreSQL: a
``"name": "\\u0000"`` reached the database, which refuses NUL in text columns.
"""

from __future__ import annotations

import json

import pytest

from provisioning.models import Connection
from tests.provisioning.connection_fixtures import Api


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["name", "key", "nested"])
def test_staff_api_refuses_nul_characters(api: Api, payload, where: str) -> None:  # noqa: ANN001
    body = payload()
    if where == "name":
        body["name"] = "bad\u0000name"
    elif where == "key":
        body["na\u0000me"] = "x"
    else:
        body["configuration"]["region"] = "eu-west-1\u0000"
    response = api("POST", "/connections", raw=json.dumps(body).encode())
    assert response.status_code == 422, response.content
    assert response.json() == {
        "code": "invalid_request",
        "detail": "Text in the request may not contain the NUL control character (\\u0000).",
    }
    assert Connection.objects.count() == 0
    assert api("POST", "/connections", payload()).status_code == 201  # the same without NUL
