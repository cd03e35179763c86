"""`manage.py rotate_ca`: rotate the fleet from one CA to another, with overlap.

The new CA is registered in AWS in the foreground (its log printed); the renewal wave then
runs in the background (the periodic task), or, with ``--wait``, in this command until it is
done, paused or failed.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from portal.commands import PortalCommand
from provisioning.jobs.models import JobLogLine
from provisioning.rotation.models import CaRotation
from provisioning.rotation.services import NewCa, ca_rotation_register, ca_rotation_start
from provisioning.rotation.wave import ca_rotation_advance
from signing.crypto import KeyType
from signing.management.commands.create_ca import ca_password_from_env_or_prompt
from signing.models import CertificateAuthority

POLL_SECONDS = 2.0


def _ca(alias: str) -> CertificateAuthority:
    ca = CertificateAuthority.objects.filter(alias=alias).first()
    if ca is None:
        raise CommandError(f"There is no CA '{alias}' in the key store.")
    return ca


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(PortalCommand):
    help = (
        "Rotate CA: register a new CA in AWS beside the old one, switch the signing profiles "
        "to it and renew every device early at --rate devices per minute; the old CA is "
        "retired once none is left. The new CA's password comes from CA_PASSWORD."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="from_alias", required=True, metavar="ALIAS")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--to", dest="to_alias", metavar="ALIAS")
        target.add_argument("--generate-ca", metavar="DN", help='e.g. "CN=Fleet CA 2,O=…,C=DE"')
        parser.add_argument(
            "--alias", help="Alias of the generated CA (default: <from>-<YYYYMMDD>)."
        )
        parser.add_argument("--key-type", default=KeyType.EC_P256.value, choices=list(KeyType))
        parser.add_argument("--days", type=_positive, default=730)
        parser.add_argument("--rate", type=_positive, default=60, help="Devices per minute.")
        parser.add_argument(
            "--failure-threshold", type=_positive, default=5, help="Pause after N failures."
        )
        parser.add_argument(
            "--renew-timeout",
            type=_positive,
            default=15,
            help="Minutes a device may take to renew before it counts as failed.",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Run the wave here and return when it is done (exit 1 when paused, failed "
            "or still running after SECONDS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["wait"] is not None and options["wait"] <= 0:
            raise CommandError("--wait must be a positive number of seconds.")
        from_ca = _ca(options["from_alias"])
        to_ca = _ca(options["to_alias"]) if options["to_alias"] else None
        new_ca = None
        if options["generate_ca"]:
            new_ca = NewCa(
                alias=options["alias"] or f"{from_ca.alias}-{timezone.now():%Y%m%d}",
                dn=options["generate_ca"],
                key_type=options["key_type"],
                days=options["days"],
            )
        password = ca_password_from_env_or_prompt(confirm=new_ca is not None)
        rotation = ca_rotation_start(
            from_ca=from_ca,
            to_ca=to_ca,
            new_ca=new_ca,
            to_ca_password=password,
            rate_per_minute=options["rate"],
            failure_threshold=options["failure_threshold"],
            renew_timeout_minutes=options["renew_timeout"],
            hand_off=False,
        )
        self.stdout.write(f"{rotation} (job #{rotation.job_id})")
        self._last_line = 0
        rotation = ca_rotation_register(rotation=rotation, echo=self._echo)
        if rotation.status == CaRotation.Status.FAILED:
            raise CommandError(rotation.result or rotation.job.result)
        if options["wait"] is None:
            self._print_new_lines(rotation)
            self.stdout.write(
                "The renewal wave runs in the background (the worker's periodic task); "
                f"follow it on job #{rotation.job_id}."
            )
            return
        self._wait(rotation, options["wait"])

    def _wait(self, rotation: CaRotation, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            rotation = ca_rotation_advance(rotation=rotation)
            self._print_new_lines(rotation)
            if rotation.status != CaRotation.Status.RUNNING:
                break
            if time.monotonic() >= deadline:
                job = rotation.job
                job.refresh_from_db()
                raise CommandError(
                    f"The rotation is still running after {seconds:g} s "
                    f"({job.progress_done} of {job.progress_total} renewed); it goes on in "
                    f"the background, follow it on job #{job.pk}."
                )
            time.sleep(POLL_SECONDS)
        if rotation.status == CaRotation.Status.DONE:
            self.stdout.write(rotation.result)
            return
        job = rotation.job
        job.refresh_from_db()
        if rotation.status == CaRotation.Status.PAUSED:
            raise CommandError(
                f"The rotation paused: {job.progress_failed} device"
                f"{'' if job.progress_failed == 1 else 's'} failed to renew (see job "
                f"#{job.pk}); fix them and resume it in the admin."
            )
        raise CommandError(rotation.result or job.result)

    def _print_new_lines(self, rotation: CaRotation) -> None:
        for line in rotation.job.log_lines.filter(id__gt=self._last_line).order_by("id"):
            self._echo(line)

    def _echo(self, line: JobLogLine) -> None:
        self._last_line = max(self._last_line, line.pk)
        self.stdout.write(f"{line.at:%H:%M:%S} {line.level.upper():7} {line.message}")
