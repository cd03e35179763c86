"""System checks that make the portal refuse to start when it is misconfigured."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.core.checks import Error, register
from django.db import DatabaseError, connections

ENCRYPTION_KEY_MISMATCH = (
    "FIELD_ENCRYPTION_KEY cannot decrypt the secrets stored in this database: set the key "
    "they were encrypted with (or list it after the new key to rotate)."
)


@register()
def encryption_key_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Decrypt the canary row with the configured key; refuse to start when that fails."""
    from encrypted_model_fields.fields import CRYPTER

    connection = connections["default"]
    try:
        if "portal_encryptioncanary" not in connection.introspection.table_names():
            return []
        with connection.cursor() as cursor:
            cursor.execute("SELECT value FROM portal_encryptioncanary ORDER BY id LIMIT 1")
            row = cursor.fetchone()
    except DatabaseError:
        return []  # no database yet: migrate will create it and the canary
    if row is None:
        return []
    try:
        CRYPTER.decrypt(row[0].encode("utf-8"))
    except (InvalidToken, ValueError, TypeError):
        return [Error(ENCRYPTION_KEY_MISMATCH, id="portal.E001")]
    return []


def require_usable_encryption_key() -> None:
    """Raise ImproperlyConfigured when the key cannot decrypt the canary.

    System checks run only for ``manage.py`` commands; gunicorn (portal/wsgi.py) and the
    Celery worker and beat (portal/celery.py) call this at start-up so they refuse too.
    """
    from django.core.exceptions import ImproperlyConfigured

    errors = encryption_key_check()
    if errors:
        raise ImproperlyConfigured(errors[0].msg)
