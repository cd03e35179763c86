"""`revoke_certificates (--serial HEX … | --device STATION/DEVICE …) --reason R [--comment C]
[--wait SECONDS]`: revoke in the portal and in AWS IoT.

With ``--wait`` it returns once AWS (asked through the portal's own client) shows every
certificate REVOKED, and exits non-zero with a sentence when an AWS action failed or the
wait timed out.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from provisioning.lifecycle.revocation import (
    certificates_for_revocation,
    certificates_revoke_in_aws,
    revocation_wait,
)
from provisioning.lifecycle.runner import iot_client
from signing.services import REVOCATION_REASONS


class Command(PortalCommand):
    help = "Revoke certificates in the portal and in AWS IoT (REVOKED, policies detached)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--serial", nargs="+", default=[], metavar="HEX")
        parser.add_argument("--device", nargs="+", default=[], metavar="STATION/DEVICE")
        parser.add_argument(
            "--reason", required=True, help=f"RFC 5280 reason: {', '.join(REVOCATION_REASONS)}."
        )
        parser.add_argument("--comment", default="", help="Recorded with the revocation.")
        parser.add_argument(
            "--wait",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Wait until AWS shows every certificate REVOKED.",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if not (opts["serial"] or opts["device"]):
            raise CommandError("Give --serial HEX … or --device STATION/DEVICE ….")
        certificates = certificates_for_revocation(serials=opts["serial"], devices=opts["device"])
        result = certificates_revoke_in_aws(
            certificates=certificates,
            reason=opts["reason"],
            comment=opts["comment"],
            actor_label="revoke_certificates command",
        )
        for cert in result.revoked:
            self.stdout.write(f"Revoked {cert.common_name} (serial {cert.serial}).")
        for cert in result.already:
            self.stdout.write(
                f"{cert.common_name} (serial {cert.serial}) was already revoked "
                f"({cert.revocation_reason or 'no reason recorded'})."
            )
        ids = ", ".join(str(i) for i in result.action_ids) or "none"
        self.stdout.write(f"AWS actions: {ids}.")
        if opts["wait"] is None:
            return
        iot: Any = None

        def describe(cert_id: str) -> str | None:
            nonlocal iot
            if iot is None:
                iot, _ = iot_client()
            try:
                desc = iot.describe_certificate(certificateId=cert_id)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return None
                raise
            return str(desc["certificateDescription"].get("status", ""))

        revocation_wait(
            certificates=result.certificates,
            action_ids=result.action_ids,
            timeout=opts["wait"],
            describe=describe,
        )
        self.stdout.write(f"AWS shows {len(result.certificates)} certificate(s) REVOKED.")
