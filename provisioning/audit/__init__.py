"""The fleet audit: where the portal's view of its certificates and AWS IoT's view differ,
and what will go wrong soon (CA expiry, overdue renewals, policies too broad); with fixes
through the AWS action outbox."""

from .models import AuditFinding, FleetAudit

__all__ = ["AuditFinding", "FleetAudit"]
