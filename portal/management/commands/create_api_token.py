"""``manage.py create_api_token USERNAME``: a staff API token, printed once as the last line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.services import api_token_create


class Command(BaseCommand):
    help = (
        "Create a staff API token for an active staff user. The token is printed once, as "
        "the last line of stdout; only its hash is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            row, token = api_token_create(username=options["username"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created staff API token {row.prefix}… for {row.user}; store it now:")
        self.stdout.write(token)
