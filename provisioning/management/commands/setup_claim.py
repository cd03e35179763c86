"""`manage.py setup_claim`: set up fleet provisioning by claim and run the job in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from provisioning.aws.client import aws_service_get
from provisioning.claim.services import claim_setup_run, claim_setup_save, claim_setup_start
from provisioning.models import Job


class Command(PortalCommand):
    help = (
        "Create or update a FLEET_PROVISIONING template, its least-privilege device policy, a "
        "claim certificate and the claim policy; prints the job log and the data endpoint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--template-name", required=True)
        parser.add_argument("--access-key-id", required=True)
        parser.add_argument(
            "--role-arn", required=True, help="IAM role AWS IoT assumes to provision things."
        )
        parser.add_argument("--region", help="Default: the AWS service's region.")
        parser.add_argument(
            "--thing-name-prefix",
            default="",
            help="Thing name = prefix + the station's SerialNumber parameter.",
        )
        parser.add_argument("--thing-type", default="")
        parser.add_argument(
            "--new-claim-certificate",
            action="store_true",
            help="Issue a new claim certificate and deactivate the old one.",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            setup = claim_setup_save(
                template_name=opts["template_name"],
                region=opts["region"] or aws_service_get().region,
                access_key_id=opts["access_key_id"],
                role_arn=opts["role_arn"],
                thing_name_prefix=opts["thing_name_prefix"],
                thing_type=opts["thing_type"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        job = claim_setup_start(
            setup=setup, run_async=False, new_claim_certificate=opts["new_claim_certificate"]
        )
        job = claim_setup_run(
            job_id=job.pk, setup_id=setup.pk, new_claim_certificate=opts["new_claim_certificate"]
        )
        for line in job.log_lines.all():
            self.stdout.write(f"{line.at:%H:%M:%S} {line.level:7} {line.message}")
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(job.result or "The claim setup failed.")
        setup.refresh_from_db()
        self.stdout.write(setup.endpoint)
