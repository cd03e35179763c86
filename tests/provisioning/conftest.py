"""Fixtures of the provisioning tests."""

# --- connections and claim (issue 7) ---------------------------------------------------------
from .connection_fixtures import (  # noqa: F401
    _fast_password_hashing,
    api,
    cert_pair,
    payload,
    staff_token,
)

# --- end connections and claim -----------------------------------------------------------------
