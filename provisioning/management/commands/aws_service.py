"""``manage.py aws_service [--enable | --disable] [--region R]``: change and print the state."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from provisioning.aws import services
from provisioning.aws.models import iot_region_choices


class Command(PortalCommand):
    help = (
        "Switch the AWS service on or off and set its region, as the admin's AWS service page "
        "does; prints the resulting state. Without options it only prints it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        switch = parser.add_mutually_exclusive_group()
        switch.add_argument("--enable", action="store_true", help="let AWS calls leave")
        switch.add_argument("--disable", action="store_true", help="refuse every AWS call")
        parser.add_argument("--region", help="AWS region, e.g. eu-west-1")

    def handle(self, *args: Any, **options: Any) -> None:
        enabled = True if options["enable"] else False if options["disable"] else None
        region = options["region"]
        if region is not None and region not in dict(iot_region_choices()):
            raise CommandError(f"{region!r} is not an AWS region where AWS IoT Core exists.")
        try:
            service = services.aws_service_update(enabled=enabled, region=region)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        state = "enabled" if service.enabled else "disabled"
        self.stdout.write(f"AWS service: {state}, region {service.region}")
