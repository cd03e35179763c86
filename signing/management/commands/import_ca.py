"""`manage.py import_ca`: import a CA (PEM certificate + key, or PKCS#12) into the key store.

The entry password comes from CA_PASSWORD; the password of the key or PKCS#12 file as given
comes from CA_IMPORT_PASSWORD (empty when the key is not encrypted). Neither from argv.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from signing.services import ca_import_pem, ca_import_pkcs12

from .create_ca import ca_password_from_env_or_prompt, validation_sentence


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None


class Command(PortalCommand):
    help = (
        "Import a CA into the key store from PEM files or a PKCS#12 file. Entry password: "
        "CA_PASSWORD; password of the file's key: CA_IMPORT_PASSWORD."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--alias", required=True)
        parser.add_argument("--certificate", metavar="FILE", help="PEM certificate file.")
        parser.add_argument("--key", metavar="FILE", help="PEM private key file.")
        parser.add_argument("--pkcs12", metavar="FILE", help=".p12/.pfx file.")
        parser.add_argument(
            "--overwrite", action="store_true", help="Replace an existing CA with the same alias."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pem = options["certificate"] or options["key"]
        if bool(pem) == bool(options["pkcs12"]):
            raise CommandError("Give either --certificate and --key, or --pkcs12.")
        if pem and not (options["certificate"] and options["key"]):
            raise CommandError("Give both --certificate and --key.")
        password = ca_password_from_env_or_prompt(confirm=True)
        source_password = os.environ.get("CA_IMPORT_PASSWORD", "")
        common = {
            "alias": options["alias"],
            "password": password,
            "overwrite": options["overwrite"],
        }
        try:
            if pem:
                ca = ca_import_pem(
                    certificate_pem=_read(options["certificate"]),
                    private_key_pem=_read(options["key"]),
                    key_password=source_password,
                    **common,
                )
            else:
                ca = ca_import_pkcs12(
                    pkcs12_data=_read(options["pkcs12"]), pkcs12_password=source_password, **common
                )
        except ValidationError as exc:
            raise CommandError(validation_sentence(exc)) from None
        self.stdout.write(f"Imported CA '{ca.alias}': {ca.subject}")
        self.stdout.write(f"SHA-256 fingerprint: {ca.fingerprint_sha256}")
        self.stdout.write(f"Valid until: {ca.not_after:%Y-%m-%d %H:%M} UTC")
