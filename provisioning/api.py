"""The provisioning app's part of the JSON API: one router holding each concern's routers
(connections for staff, the agent protocol for stations). ``portal.api`` mounts it."""

from __future__ import annotations

from ninja import Router

from .connections.api import router as connections_router
from .fleet.agent_api import router as agent_router
from .lifecycle.api import router as lifecycle_router

router = Router()
router.add_router("/", agent_router)
router.add_router("/", connections_router)
router.add_router("/", lifecycle_router)
