"""Admin of the provisioning app."""
# ============================================================================================
# BEGIN jobs and AWS IoT / JITP admin (issue 3): the classes live in their own modules.
# ============================================================================================
from . import admin_jitp, admin_jobs  # noqa: F401  (registers JobAdmin and JitpSettingsAdmin)

# ============================================================================================
# END jobs and AWS IoT / JITP admin (issue 3).
# ============================================================================================
