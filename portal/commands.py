"""The management commands' door: a domain error becomes a non-zero exit with its sentence."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from .errors import DomainError


class PortalCommand(BaseCommand):
    """Base of the portal's commands: services' refusals exit 1 with one sentence on stderr."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
