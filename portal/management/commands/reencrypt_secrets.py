"""``manage.py reencrypt_secrets``: re-encrypt all secrets with the first FIELD_ENCRYPTION_KEY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.rotation import RotationError, encrypted_fields_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column with the first key in FIELD_ENCRYPTION_KEY, so the "
        "older keys listed after it can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counts = encrypted_fields_rotate()
        except RotationError as exc:
            raise CommandError(str(exc)) from None
        total = sum(counts.values())
        for label, count in sorted(counts.items()):
            if count:
                self.stdout.write(f"{label}: {count}")
        self.stdout.write(f"Re-encrypted {total} value{'s' if total != 1 else ''}.")
