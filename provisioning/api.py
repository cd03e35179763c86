"""Staff API of the provisioning app (connections)."""
from ninja import Router

router = Router(tags=["connections"])
