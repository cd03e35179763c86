"""Station API of the signing service (onboarding requests)."""
from ninja import Router

router = Router(tags=["onboarding"])
