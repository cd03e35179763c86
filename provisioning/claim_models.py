"""Only for migration 0003_claim_setup, which names ``provisioning.claim_models._region_choices``
(the claim models live in ``provisioning/claim/models.py``). Delete this module when the
provisioning migrations are regenerated as one history."""
from .claim.models import _region_choices

__all__ = ["_region_choices"]
