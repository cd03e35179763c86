"""Fixtures for the device tests: the staff connections-API helpers (tests/provisioning)."""

from __future__ import annotations

from tests.provisioning.connection_fixtures import (  # noqa: F401 - fixtures used by name
    api,
    cert_pair,
    payload,
    staff_token,
)
