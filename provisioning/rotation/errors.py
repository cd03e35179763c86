"""The refusals of CA rotation and retirement (domain errors with stable codes)."""

from __future__ import annotations

from portal.errors import Conflict, InvalidInput


class RotationRefused(InvalidInput):
    """The rotation cannot start as asked (same CA, archived or expiring CA, no JITP setup)."""

    code = "rotation_refused"


class RotationRunning(Conflict):
    """A rotation of this CA is already running or paused."""

    code = "rotation_running"


class RotationNotInState(Conflict):
    """Pause or resume asked of a rotation in another status."""

    code = "rotation_not_in_state"
