"""`check_renewals`: mark certificates due for renewal; print CA-expiry warnings."""

from __future__ import annotations

from typing import Any

from portal.commands import PortalCommand
from signing.services import renewals_check


class Command(PortalCommand):
    help = "Mark certificates whose renewal point has passed; warn about CAs expiring soon."

    def handle(self, *args: Any, **opts: Any) -> None:
        result = renewals_check()
        self.stdout.write(
            f"Marked {result.marked_due} certificate"
            f"{'' if result.marked_due == 1 else 's'} due for renewal."
        )
        for warning in result.warnings:
            self.stderr.write(f"Warning: {warning}")
