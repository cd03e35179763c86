"""`add_station NAME`: create a station; its API token is the last stdout line, shown once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from devices.models import Station
from devices.services import station_create
from portal.commands import PortalCommand


class Command(PortalCommand):
    help = "Create a station and print its API token (last line of stdout, shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **opts: Any) -> None:
        if Station.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"A station named {opts['name']!r} already exists.")
        try:
            station, token = station_create(name=opts["name"], description=opts["description"])
        except ValidationError as exc:
            messages = [m for ms in exc.message_dict.values() for m in ms]
            raise CommandError(" ".join(messages)) from None
        self.stdout.write(f"Station {station.name} created. Its API token (shown once):")
        self.stdout.write(token)
