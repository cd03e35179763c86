"""``manage.py add_access_key --id ID --store-for 1d``: store an AWS access key.

The secret comes from stdin or a prompt, never argv.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from provisioning.aws import services
from provisioning.models import AccessKey


class Command(PortalCommand):
    help = (
        "Store an AWS access key encrypted for a limited period. The secret is read from "
        "stdin when piped, else prompted for; it is never taken from the command line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--id", dest="access_key_id", required=True, help="Access key id (AKIA… or ASIA…)."
        )
        parser.add_argument(
            "--store-for",
            required=True,
            choices=list(AccessKey.PERIODS),
            help="How long the secret is kept before it is purged.",
        )
        parser.add_argument("--description", default="", help="What the key is for.")

    def _read_secret(self) -> str:
        if sys.stdin is not None and not sys.stdin.isatty():
            return sys.stdin.readline().strip()
        try:
            return getpass.getpass("Secret access key (input hidden): ").strip()
        except (EOFError, KeyboardInterrupt):
            raise CommandError("No secret access key was given.") from None

    def handle(self, *args: Any, **options: Any) -> None:
        secret = self._read_secret()
        if not secret:
            raise CommandError("No secret access key was given on stdin or at the prompt.")
        try:
            key = services.access_key_create(
                access_key_id=options["access_key_id"],
                secret=secret,
                store_for=options["store_for"],
                description=options["description"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(
            f"Stored access key {key.access_key_id}; it will be purged at "
            f"{key.purge_at:%Y-%m-%d %H:%M %Z}."
        )
