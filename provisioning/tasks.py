"""Every Celery task of the provisioning app (Celery's autodiscovery imports this module).

Each concern keeps its tasks in its own package; the task names stay
``provisioning.tasks.<name>`` because beat schedules, routes and queued messages use them.
"""

from .audit.tasks import fleet_audit
from .aws.tasks import prune_aws_call_log, purge_access_keys
from .claim.tasks import claim_setup_task
from .fleet.tasks import fleet_advance, fleet_install_run
from .jitp.tasks import jitp_setup
from .jobs.tasks import sweep_jobs
from .lifecycle.tasks import aws_actions_run
from .rotation.tasks import ca_retire, ca_rotation_register, ca_rotations_advance

__all__ = [
    "aws_actions_run",
    "ca_retire",
    "ca_rotation_register",
    "ca_rotations_advance",
    "claim_setup_task",
    "fleet_audit",
    "fleet_advance",
    "fleet_install_run",
    "jitp_setup",
    "prune_aws_call_log",
    "purge_access_keys",
    "sweep_jobs",
]
