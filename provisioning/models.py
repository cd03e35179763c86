"""Every model of the provisioning app, from the packages that define them.

Django registers models found through this module; each concern keeps its own models
(aws/, jobs/, jitp/, claim/, connections/, fleet/, lifecycle/, rotation/).
"""

from .audit.models import AuditFinding, FleetAudit
from .aws.models import (
    AccessKey,
    AwsApiCall,
    AwsService,
    access_key_id_validator,
    iot_region_choices,
)
from .claim.models import ClaimSetup
from .connections.models import Connection
from .fleet.models import FleetInstall, FleetInstallStation
from .jitp.models import (
    JitpSettings,
    iam_role_arn_validator,
    thing_group_list_validator,
    thing_name_validator,
)
from .jobs.models import Job, JobLogLine
from .lifecycle.models import AwsAction
from .rotation.models import CaRetirement, CaRotation, CaRotationItem

__all__ = [
    "AccessKey",
    "AuditFinding",
    "AwsAction",
    "AwsApiCall",
    "AwsService",
    "CaRetirement",
    "CaRotation",
    "CaRotationItem",
    "ClaimSetup",
    "Connection",
    "FleetAudit",
    "FleetInstall",
    "FleetInstallStation",
    "JitpSettings",
    "Job",
    "JobLogLine",
    "access_key_id_validator",
    "iam_role_arn_validator",
    "iot_region_choices",
    "thing_group_list_validator",
    "thing_name_validator",
]
