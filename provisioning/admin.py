"""Admin registrations of the provisioning app (each feature in its own module)."""

# --- AWS service, access keys, AWS API call log (issue 2) --------------------------------------
# --- Jobs and AWS IoT / JITP settings (issue 3) ------------------------------------------------
from . import (  # noqa: F401  (registers JobAdmin and JitpSettingsAdmin)
    admin_aws,  # noqa: F401  (registers its ModelAdmins)
    admin_jitp,
    admin_jobs,
)
