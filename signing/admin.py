"""Admin of the signing app."""

# --- signing service (issue 4): profiles, approval queue, issued certificates ---
from . import admin_issuance  # noqa: E402, F401  (registers its ModelAdmins)

# --- end signing service ---
