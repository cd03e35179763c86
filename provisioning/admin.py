"""Admin of the provisioning app."""

# --- connections and claim setup (issue 7) ---------------------------------------------------
from . import claim_admin as _claim_admin  # noqa: E402, F401
from .connections import admin as _connections_admin  # noqa: E402, F401
# --- end connections -------------------------------------------------------------------------
