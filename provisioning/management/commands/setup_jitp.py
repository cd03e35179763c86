"""`manage.py setup_jitp`: save the JITP parameters and run the JITP job in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from provisioning.jitp import jitp_settings_get, jitp_settings_update, jitp_setup_run
from provisioning.jobs.services import job_create
from provisioning.models import AccessKey, JitpSettings, Job, JobLogLine
from signing.management.commands.create_ca import (
    ca_password_from_env_or_prompt,
    validation_sentence,
)


class Command(PortalCommand):
    help = (
        "Save the AWS IoT / JITP parameters and run the JITP setup job in the foreground, "
        "printing its log. The CA password comes from CA_PASSWORD (or a prompt)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--access-key-id", required=True)
        parser.add_argument("--role-arn", required=True)
        parser.add_argument("--region", default="", help="Default: the AWS service's region.")
        ca = parser.add_mutually_exclusive_group(required=True)
        ca.add_argument("--generate-ca", metavar="DN", help='e.g. "CN=Fleet CA,O=ACME,C=DE"')
        ca.add_argument("--ca-alias", metavar="A", help="Use this CA from the key store.")
        parser.add_argument(
            "--alias",
            default="",
            help="Alias of the generated CA (default: the saved one, jitp-ca).",
        )
        parser.add_argument("--days", type=int, default=None, help="Validity of a new CA.")
        parser.add_argument(
            "--overwrite-ca",
            action="store_true",
            help="Generate even when a CA with the alias exists (replaces it).",
        )
        parser.add_argument(
            "--sni-only",
            action="store_true",
            help="Register the CA in SNI_ONLY mode (no verification cert).",
        )
        parser.add_argument(
            "--template-name",
            default="",
            help="Use a named JITP provisioning template (default: inline).",
        )
        parser.add_argument(
            "--policy", choices=["least-privilege", "seven-actions"], default="least-privilege"
        )
        parser.add_argument("--thing-type", default="")
        parser.add_argument("--thing-groups", default="", help="Comma-separated.")
        parser.add_argument("--billing-group", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        key = AccessKey.objects.filter(access_key_id=options["access_key_id"]).first()
        if key is None:
            raise CommandError(
                f"There is no access key {options['access_key_id']}; add it with "
                "`manage.py add_access_key` first."
            )
        password = ca_password_from_env_or_prompt(confirm=False)
        fields: dict[str, Any] = {
            "access_key": key,
            "role_arn": options["role_arn"],
            "region": options["region"],
            "ca_password": password,
            "overwrite_ca": options["overwrite_ca"],
            "template_name": options["template_name"],
            "certificate_mode": (
                JitpSettings.CertificateMode.SNI_ONLY
                if options["sni_only"]
                else JitpSettings.CertificateMode.DEFAULT
            ),
            "policy_mode": (
                JitpSettings.PolicyMode.SEVEN_ACTIONS_ALL
                if options["policy"] == "seven-actions"
                else JitpSettings.PolicyMode.LEAST_PRIVILEGE
            ),
            "thing_type_name": options["thing_type"],
            "thing_groups": options["thing_groups"],
            "billing_group": options["billing_group"],
        }
        if options["generate_ca"]:
            fields.update(
                ca_source=JitpSettings.CaSource.GENERATE,
                ca_dn=options["generate_ca"],
                ca_alias=options["alias"] or jitp_settings_get().ca_alias,
            )
        else:
            fields.update(ca_source=JitpSettings.CaSource.EXISTING, ca_alias=options["ca_alias"])
        if options["days"] is not None:
            fields["ca_validity_days"] = options["days"]
        try:
            jitp_settings_update(**fields)
        except ValidationError as exc:
            raise CommandError(validation_sentence(exc)) from None

        job = job_create(kind=Job.Kind.JITP_SETUP, title="Set up JITP (command line)", total=6)
        self.stdout.write(f"JITP setup job #{job.pk}")
        job = jitp_setup_run(job=job, echo=self._echo)
        if job.status != Job.Status.SUCCEEDED:
            code = f" [{job.error_code}]" if job.error_code else ""
            raise CommandError(f"{job.result}{code}")
        self.stdout.write(f"Data endpoint: {jitp_settings_get().data_endpoint}")

    def _echo(self, line: JobLogLine) -> None:
        # The whole job log goes to stdout; stderr gets only the failure sentence.
        self.stdout.write(f"{line.at:%H:%M:%S} {line.level.upper():7} {line.message}")
