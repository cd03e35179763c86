"""``manage.py purge_access_keys``: purge every key whose storage period has elapsed, now."""

from __future__ import annotations

from typing import Any

from portal.commands import PortalCommand
from provisioning.aws import services


class Command(PortalCommand):
    help = "Purge (set to NULL) the secret of every access key whose storage period has elapsed."

    def handle(self, *args: Any, **options: Any) -> None:
        count = services.access_key_purge_due()
        noun = "access key" if count == 1 else "access keys"
        self.stdout.write(f"Purged {count} {noun}.")
