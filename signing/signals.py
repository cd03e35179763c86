"""What the signing service tells the layers above it (provisioning), without knowing them.

Receivers run inside the sender's transaction, so a receiver that records work as a row
(an AWS action, say) commits or rolls back together with the change that caused it.
"""

from __future__ import annotations

from django.dispatch import Signal

# A certificate was revoked in the portal. Arguments: certificate (IssuedCertificate),
# reason (an RFC 5280 reason name), actor (portal.services.Actor), actor_label (who, when
# not a user: 'revoke_certificates command').
certificate_revoked = Signal()

# A certificate was superseded by a renewal that proved itself. Arguments: certificate
# (the old IssuedCertificate), successor (the new one).
certificate_superseded = Signal()
