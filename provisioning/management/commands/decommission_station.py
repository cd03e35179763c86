"""`decommission_station NAME [--delete-things] [--dry-run]`: revoke every certificate of the
station (cessationOfOperation), detach them in AWS, optionally delete its things, and
invalidate its token. ``--dry-run`` prints the same list and changes nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from devices.models import Station
from portal.commands import PortalCommand
from provisioning.lifecycle.decommission import station_decommission


class Command(PortalCommand):
    help = "Decommission a station: revoke and detach its certificates, invalidate its token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", metavar="NAME")
        parser.add_argument(
            "--delete-things", action="store_true", help="Also delete its devices' things in AWS."
        )
        parser.add_argument("--dry-run", action="store_true", help="List the changes only.")

    def handle(self, *args: Any, **opts: Any) -> None:
        station = Station.objects.filter(name=opts["name"]).first()
        if station is None:
            raise CommandError(f"There is no station named '{opts['name']}'.")
        plan = station_decommission(
            station=station,
            delete_things=opts["delete_things"],
            dry_run=opts["dry_run"],
            actor_label="decommission_station command",
        )
        for line in plan.lines():
            self.stdout.write(("Would: " if plan.dry_run else "") + line)
        if plan.dry_run:
            self.stdout.write("Dry run: nothing was changed.")
            return
        ids = ", ".join(str(a.pk) for a in plan.actions) or "none"
        self.stdout.write(f"Station {station.name} decommissioned; AWS actions: {ids}.")
