"""``manage.py fleet_audit [--fix] [--json]``: the portal's certificates against AWS IoT.

Exit 0 when no finding of severity warning or above remains, 1 otherwise (with ``--fix``:
findings whose fix was recorded do not count). ``--json`` prints exactly
``{"findings": [{"check", "severity", "subject", "detail", "fixable"}]}`` on stdout; the
call count and the estimate go to stderr then.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from provisioning.audit.models import FleetAudit
from provisioning.audit.services import audit_estimate, audit_rate, fleet_audit_run, has_severe


class Command(PortalCommand):
    help = "Audit the fleet: the portal's certificates, things and CAs against AWS IoT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fix", action="store_true", help="Record the fixes of fixable findings."
        )
        parser.add_argument("--json", action="store_true", help="Print the findings as JSON.")
        parser.add_argument(
            "--estimate",
            type=int,
            default=10000,
            metavar="N",
            help="Also print the calls and duration of an audit of N devices (default 10000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = fleet_audit_run(actor_label="fleet_audit command", fix=options["fix"])
        if run.status == FleetAudit.Status.FAILED:
            raise CommandError(run.error or "The fleet audit failed.")
        findings = list(run.findings.all())
        info = self.stderr if options["json"] else self.stdout
        if options["json"]:
            self.stdout.write(json.dumps({"findings": [f.as_dict() for f in findings]}))
        else:
            for f in findings:
                fixed = " [fix recorded]" if f.fixed_at else (" [fixable]" if f.fixable else "")
                self.stdout.write(
                    f"{f.severity.upper():8} {f.check}: {f.subject}: {f.detail}{fixed}"
                )
            if not findings:
                self.stdout.write("No findings: the portal and AWS IoT agree.")
        rate = audit_rate()
        info.write(
            f"{run.calls} AWS calls in {run.duration_seconds:.1f} s "
            f"({run.counts.get('certificates', 0)} certificates, "
            f"{run.counts.get('things', 0)} things) at {rate:g} calls/s."
        )
        n = options["estimate"]
        if n > 0:
            est = audit_estimate(devices=n, rate=rate)
            info.write(
                f"An audit of {n} devices takes about {est.calls} calls, "
                f"{est.seconds / 60:.1f} min at {rate:g} calls/s."
            )
        if has_severe(run, unfixed_only=options["fix"]):
            sys.exit(1)
