"""Admin registrations of the provisioning app (each feature in its own module)."""

# --- AWS service, access keys, AWS API call log (issue 2) --------------------------------------
# --- Jobs and AWS IoT / JITP settings (issue 3) ------------------------------------------------
from . import (  # noqa: F401  (registers JobAdmin and JitpSettingsAdmin)
    admin_aws,  # noqa: F401  (registers its ModelAdmins)
    admin_jitp,
    admin_jobs,
)

# --- connections and claim setup (issue 7) ---------------------------------------------------
from . import claim_admin as _claim_admin  # noqa: E402, F401
from .connections import admin as _connections_admin  # noqa: E402, F401
# --- end connections -------------------------------------------------------------------------
