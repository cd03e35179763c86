"""`manage.py claim_bundle`: write the claim bundle (zip, mode 0600) for stations; audited."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from portal.errors import DomainError
from provisioning.claim import claim_bundle_build
from provisioning.claim.models import ClaimSetup


class Command(PortalCommand):
    help = "Write the claim certificate, key, template name and endpoint as a zip (0600)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--template-name", required=True)
        parser.add_argument("--out", required=True, help="File to create (must not exist).")

    def handle(self, *args: Any, **opts: Any) -> None:
        setup = ClaimSetup.objects.filter(template_name=opts["template_name"]).first()
        if setup is None:
            raise CommandError(f"There is no claim setup {opts['template_name']!r}.")
        out = Path(opts["out"])
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise CommandError(f"Cannot create {out}: {exc.strerror}.") from None
        try:
            data = claim_bundle_build(setup=setup)
        except DomainError:
            os.close(fd)
            out.unlink()
            raise
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        self.stdout.write(str(out))
