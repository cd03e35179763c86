"""`add_station NAME [--enrollment-code]`: create a station; the last stdout line is its API
token or, with ``--enrollment-code``, a one-time enrolment code (shown once either way)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from devices.enrollment import enrollment_code_create
from devices.models import Station
from devices.services import station_create
from portal.commands import PortalCommand


class Command(PortalCommand):
    help = (
        "Create a station and print its API token, or with --enrollment-code a one-time "
        "enrolment code (last line of stdout, shown once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--enrollment-code",
            action="store_true",
            help="print a one-time enrolment code for `fleet-agent enroll` instead of the token",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if Station.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"A station named {opts['name']!r} already exists.")
        try:
            with transaction.atomic():
                station, token = station_create(name=opts["name"], description=opts["description"])
                code = (
                    enrollment_code_create(station=station, actor_label="add_station")
                    if opts["enrollment_code"]
                    else None
                )
        except ValidationError as exc:
            messages = [m for ms in exc.message_dict.values() for m in ms]
            raise CommandError(" ".join(messages)) from None
        if code is not None:
            self.stdout.write(
                f"Station {station.name} created. Its enrolment code (shown once, single use):"
            )
            self.stdout.write(code)
            return
        self.stdout.write(f"Station {station.name} created. Its API token (shown once):")
        self.stdout.write(token)
