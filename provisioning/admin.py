"""Admin registrations of the provisioning app (each feature in its own module)."""

# --- AWS service, access keys, AWS API call log (issue 2) --------------------------------------
from . import admin_aws  # noqa: F401  (registers its ModelAdmins)
