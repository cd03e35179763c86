"""`manage.py retire_ca`: set a CA INACTIVE in AWS and archive it, once nothing active
depends on it (or, with --force and a confirmation, even then)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from provisioning.jobs.models import Job, JobLogLine
from provisioning.rotation.retire import ca_retire_run, ca_retire_start
from signing.models import CertificateAuthority
from signing.services import ca_active_certificates


class Command(PortalCommand):
    help = (
        "Retire a CA: INACTIVE in AWS IoT (auto-registration off), then archived in the key "
        "store (its key is kept). Refused while active certificates remain under it, unless "
        "--force (asks to confirm on a terminal; --yes confirms in scripts)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("alias")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Retire even though active certificates remain (those devices stop working).",
        )
        parser.add_argument("--yes", action="store_true", help="Confirm --force without a prompt.")

    def handle(self, *args: Any, **options: Any) -> None:
        ca = CertificateAuthority.objects.filter(alias=options["alias"]).first()
        if ca is None:
            raise CommandError(f"There is no CA '{options['alias']}' in the key store.")
        active = ca_active_certificates(ca=ca).count()
        if options["force"] and active and not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError(
                    f"--force would break {active} active certificate"
                    f"{'' if active == 1 else 's'} under CA '{ca.alias}'; add --yes to confirm."
                )
            answer = input(
                f"{active} active certificate{'' if active == 1 else 's'} under CA "
                f"'{ca.alias}' stop working in AWS. Type the alias to confirm: "
            )
            if answer.strip() != ca.alias:
                raise CommandError("Not confirmed; nothing was changed.")
        job = ca_retire_start(ca=ca, force=options["force"], hand_off=False)
        self.stdout.write(f"{job}")
        if job.status == Job.Status.QUEUED:
            job = ca_retire_run(job=job, echo=self._echo)
        if job.status != Job.Status.SUCCEEDED:
            code = f" [{job.error_code}]" if job.error_code else ""
            raise CommandError(f"{job.result}{code}")
        self.stdout.write(job.result)

    def _echo(self, line: JobLogLine) -> None:
        self.stdout.write(f"{line.at:%H:%M:%S} {line.level.upper():7} {line.message}")
