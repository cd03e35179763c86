"""`manage.py fleet_install`: the CLI door of "Install AWS MQTT device" (same service as admin).

The certificate password comes from DEVICE_CERT_PASSWORD (never argv). A dry run prints the
per-station plan and changes nothing.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from portal.commands import PortalCommand
from portal.handoff import handoffs_reset, handoffs_tell_command
from provisioning.fleet.plan import plan_summary
from provisioning.fleet.services import fleet_install_create, fleet_install_start


class Command(PortalCommand):
    help = "Install the same AWS MQTT device on the given stations (or all of them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--device-name", required=True)
        parser.add_argument("--profile", required=True, help="Signing profile name.")
        parser.add_argument("--endpoint", default="", help="Broker (AWS IoT data) endpoint.")
        parser.add_argument("--port", type=int, default=8883)
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--stations", help="Comma-separated station names.")
        group.add_argument("--all", action="store_true", help="Every station.")
        parser.add_argument("--comment", default="", help="Onboarding comment shown with CSRs.")
        parser.add_argument("--concurrency", type=int, default=None)
        parser.add_argument("--timeout-hours", type=int, default=None)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would be created or changed; change nothing.",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        password = os.environ.get("DEVICE_CERT_PASSWORD") or settings.DEVICE_CERT_PASSWORD or ""
        if not opts["dry_run"] and not password:
            raise CommandError(
                "Set DEVICE_CERT_PASSWORD to the certificate password (at least 8 characters)."
            )
        stations = (
            [s for s in (opts["stations"] or "").split(",") if s.strip()]
            if not opts["all"]
            else None
        )
        if not opts["all"] and not stations:
            raise CommandError("Select at least one station.")
        hours = opts["timeout_hours"]
        handoffs_reset()
        try:
            with transaction.atomic():
                install = fleet_install_create(
                    device_name=opts["device_name"],
                    profile=opts["profile"],
                    endpoint=opts["endpoint"],
                    port=opts["port"],
                    key_password="" if opts["dry_run"] else password,
                    comment=opts["comment"],
                    stations=stations,
                    all_stations=opts["all"],
                    concurrency=opts["concurrency"],
                    timeout=timedelta(hours=hours) if hours else None,
                    dry_run=opts["dry_run"],
                )
                if not install.dry_run:
                    fleet_install_start(install=install)
        except ValidationError as exc:
            messages = (
                [m for msgs in exc.message_dict.values() for m in msgs]
                if hasattr(exc, "error_dict")
                else exc.messages
            )
            raise CommandError(" ".join(messages)) from None
        if install.dry_run:
            for entry in install.plan:
                self.stdout.write(f"{entry['station']}: {entry['action']}: {entry['detail']}")
            self.stdout.write(f"Dry run, nothing changed: {plan_summary(install.plan)}.")
            return
        self.stdout.write(
            f"Started {install.job} ({install.job.title}); follow it at "
            f"/admin/provisioning/fleetinstall/{install.pk}/progress/."
        )
        handoffs_tell_command(self)
