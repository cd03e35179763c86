"""Station agent API: desired configuration and state reports."""
from ninja import Router

router = Router(tags=["agent"])
