"""`manage.py create_ca`: generate a CA into the key store (password from CA_PASSWORD), or
with ``--backend pkcs11`` inside an HSM token (module, token and PIN from PKCS11_*)."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from signing.crypto import KeyType
from signing.models import CertificateAuthority
from signing.services import ca_generate


def ca_password_from_env_or_prompt(*, confirm: bool) -> str:
    """The CA password from CA_PASSWORD, or a prompt on a terminal; never from argv."""
    password = os.environ.get("CA_PASSWORD", "")
    if password:
        return password
    if not sys.stdin.isatty():
        raise CommandError("Set the CA password in the CA_PASSWORD environment variable.")
    password = getpass.getpass("CA password: ")
    if confirm and getpass.getpass("CA password (again): ") != password:
        raise CommandError("The two passwords differ.")
    return password


def validation_sentence(exc: ValidationError) -> str:
    """One sentence out of a ValidationError (the first message), for a CLI's stderr."""
    messages = exc.messages
    return messages[0] if messages else "The input is not valid."


class Command(PortalCommand):
    help = "Generate a CA (key + self-signed certificate) into the key store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--alias", required=True)
        parser.add_argument("--dn", required=True, help='e.g. "CN=Fleet CA,O=ACME,C=DE"')
        parser.add_argument(
            "--key-type", default=KeyType.EC_P256.value, choices=[k.value for k in KeyType]
        )
        parser.add_argument("--days", type=int, default=730)
        parser.add_argument(
            "--overwrite", action="store_true", help="Replace an existing CA with the same alias."
        )
        parser.add_argument(
            "--backend",
            default=CertificateAuthority.KeyBackend.DATABASE.value,
            choices=[b.value for b in CertificateAuthority.KeyBackend],
            help="database: key encrypted with CA_PASSWORD in the database; pkcs11: key "
            "generated in the HSM token (PKCS11_MODULE, PKCS11_TOKEN_LABEL, PKCS11_PIN).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pkcs11 = options["backend"] == CertificateAuthority.KeyBackend.PKCS11
        password = "" if pkcs11 else ca_password_from_env_or_prompt(confirm=True)
        try:
            ca = ca_generate(
                alias=options["alias"],
                dn=options["dn"],
                password=password,
                key_type=options["key_type"],
                days=options["days"],
                overwrite=options["overwrite"],
                backend=options["backend"],
            )
        except ValidationError as exc:
            raise CommandError(validation_sentence(exc)) from None
        self.stdout.write(f"Created CA '{ca.alias}': {ca.subject}")
        self.stdout.write(f"SHA-256 fingerprint: {ca.fingerprint_sha256}")
        self.stdout.write(f"Valid until: {ca.not_after:%Y-%m-%d %H:%M} UTC")
        if pkcs11:
            self.stdout.write(
                f"Key: PKCS#11 token '{ca.pkcs11_token_label}', label '{ca.pkcs11_key_label}', "
                f"id {ca.pkcs11_key_id} (not extractable)"
            )
