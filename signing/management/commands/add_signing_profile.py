"""`add_signing_profile --name P --ca-alias A --country CC [--cn-template T] [--days N]`.

The CA password comes from CA_PASSWORD (never argv); it is checked against the CA's key.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from signing.models import CertificateAuthority, SigningProfile, default_accepted_key_types
from signing.services import signing_profile_create


class Command(PortalCommand):
    help = "Create a signing profile (CA password from the CA_PASSWORD environment variable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--ca-alias", required=True)
        parser.add_argument("--country", required=True, help="Two-letter country code (C).")
        parser.add_argument(
            "--cn-template",
            default="{station}:{device}",
            help="Placeholders {station} {device} {serial}.",
        )
        parser.add_argument("--days", type=int, default=365, help="Validity in days.")
        parser.add_argument("--organization", default="")
        parser.add_argument("--organizational-unit", default="")
        parser.add_argument(
            "--key-types",
            default=",".join(default_accepted_key_types()),
            help="Accepted device key types, comma-separated (default: every type AWS IoT "
            "accepts).",
        )
        parser.add_argument(
            "--renewal-policy", choices=["automatic", "manual"], default="automatic"
        )
        parser.add_argument(
            "--default",
            action="store_true",
            help="Use for devices without a profile (installed by hand).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        password = os.environ.get("CA_PASSWORD", "")
        if not password:
            raise CommandError("Set the CA password in the CA_PASSWORD environment variable.")
        ca = CertificateAuthority.objects.filter(alias=opts["ca_alias"]).first()
        if ca is None:
            raise CommandError(f"There is no CA with alias {opts['ca_alias']!r} in the key store.")
        if SigningProfile.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"A signing profile named {opts['name']!r} already exists.")
        try:
            profile = signing_profile_create(
                name=opts["name"],
                ca=ca,
                ca_password=password,
                country=opts["country"],
                cn_template=opts["cn_template"],
                validity_days=opts["days"],
                accepted_key_types=[t.strip() for t in opts["key_types"].split(",") if t.strip()],
                is_default=opts["default"] or not SigningProfile.objects.exists(),
                organization=opts["organization"],
                organizational_unit=opts["organizational_unit"],
                renewal_policy=opts["renewal_policy"],
            )
        except ValidationError as exc:
            messages = [m for ms in exc.message_dict.values() for m in ms]
            raise CommandError(" ".join(messages)) from None
        self.stdout.write(
            f"Signing profile {profile.name} created (CA {ca.alias}, "
            f"{profile.validity_days} days, CN {profile.cn_template})."
        )
