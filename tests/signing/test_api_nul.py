"""NUL characters in API bodies are a 422 with a sentence, never a 500 (PostgreSQL).

Found by the schemathesis run of the connections API on PostgreSQL: a
``"name": "\\u0000"`` reached the database, which refuses NUL in text columns.
"""

from __future__ import annotations

import json

import pytest

from signing.models import OnboardingRequest
from tests.signing.conftest import make_ec_csr


@pytest.mark.django_db
def test_station_api_refuses_nul_characters(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    body = json.dumps({"device": "aws", "csr": make_ec_csr(), "comment": "a\u0000b"})
    response = client.post(
        "/api/v1/onboarding-requests",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid_request"
    assert OnboardingRequest.objects.count() == 0
