"""Admin registrations of the provisioning app: each concern registers its own ModelAdmins."""

from .audit import admin as audit_admin
from .aws import admin as aws_admin
from .claim import admin as claim_admin
from .connections import admin as connections_admin
from .fleet import admin as fleet_admin
from .jitp import admin as jitp_admin
from .jobs import admin as jobs_admin
from .lifecycle import admin as lifecycle_admin
from .rotation import admin as rotation_admin

__all__ = [
    "audit_admin",
    "aws_admin",
    "claim_admin",
    "connections_admin",
    "fleet_admin",
    "jitp_admin",
    "jobs_admin",
    "lifecycle_admin",
    "rotation_admin",
]
