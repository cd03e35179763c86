"""Fleet install: put the same MQTT device on many stations and follow each one to
"connected", plus the station agent's protocol (desired configuration, state reports).

``services`` (create, start, run), ``placement`` (dispatch), ``cancel``, ``sweep`` (the
periodic sweep), ``transitions`` (the per-station state machine's moves), ``plan`` (dry runs),
``agent_config`` / ``agent_reports`` / ``agent_api`` (GET /agent/config, POST /agent/state).
"""

from .agent_reports import fleet_config_delivered, fleet_station_reported, station_report_state
from .cancel import fleet_install_cancel, fleet_install_station_cancel
from .placement import fleet_install_dispatch
from .plan import fleet_install_plan, plan_summary
from .services import (
    DryRunNotStartable,
    FleetInstallFinished,
    default_endpoint,
    fleet_install_create,
    fleet_install_run,
    fleet_install_start,
)
from .sweep import fleet_advance

__all__ = [
    "DryRunNotStartable",
    "FleetInstallFinished",
    "default_endpoint",
    "fleet_advance",
    "fleet_config_delivered",
    "fleet_install_cancel",
    "fleet_install_create",
    "fleet_install_dispatch",
    "fleet_install_plan",
    "fleet_install_run",
    "fleet_install_start",
    "fleet_install_station_cancel",
    "fleet_station_reported",
    "plan_summary",
    "station_report_state",
]
