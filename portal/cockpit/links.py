"""Links from the cockpit to the admin's changelists, with real filter query strings."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from django.urls import reverse


def changelist(app_label: str, model: str, **filters: object) -> str:
    """The admin changelist of ``app_label.model`` filtered by ``filters`` (lookup=value)."""
    url = reverse(f"admin:{app_label}_{model}_changelist")
    if not filters:
        return url
    return f"{url}?{urlencode({k: _value(v) for k, v in filters.items()})}"


def _value(value: object) -> str:
    if isinstance(value, datetime):
        # Whole seconds in UTC with a Z: what the changelist's DateTimeField lookups parse.
        return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)
