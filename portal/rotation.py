"""Re-encrypt every encrypted column with the first FIELD_ENCRYPTION_KEY (key rotation).

Rotation: put the new key first in FIELD_ENCRYPTION_KEY and keep the old ones after it
(``new,old``), restart, run ``manage.py reencrypt_secrets``, then drop the old key.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.db import connection, transaction
from encrypted_model_fields.fields import EncryptedMixin


class RotationError(Exception):
    """A stored value could not be decrypted with any configured key (nothing was changed)."""


def encrypted_columns() -> list[tuple[str, str, str, str]]:
    """(model label, table, primary-key column, column) for every encrypted field."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedMixin):
                pk_column = str(model._meta.pk.column)
                found.append((model._meta.label, model._meta.db_table, pk_column, field.column))
    return found


@transaction.atomic
def encrypted_fields_rotate() -> dict[str, int]:
    """Re-encrypt each stored value with the primary key; count rows per model.

    Works on the raw column (not through the model field), because the field silently hands
    back ciphertext it cannot decrypt; here an undecryptable value stops the whole run.
    """
    from encrypted_model_fields.fields import CRYPTER

    counts: dict[str, int] = {}
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for label, table, pk_column, column in encrypted_columns():
            cursor.execute(
                f"SELECT {quote(pk_column)}, {quote(column)} FROM {quote(table)} "  # noqa: S608 - quoted names
                f"WHERE {quote(column)} IS NOT NULL"
            )
            rows = cursor.fetchall()
            for pk, value in rows:
                try:
                    rotated = CRYPTER.rotate(str(value).encode("utf-8")).decode("utf-8")
                except InvalidToken:
                    raise RotationError(
                        f"A value in {label}.{column} (row {pk}) cannot be decrypted with any "
                        "FIELD_ENCRYPTION_KEY entry; add the key it was encrypted with and "
                        "run again. Nothing was changed."
                    ) from None
                cursor.execute(
                    f"UPDATE {quote(table)} SET {quote(column)} = %s "  # noqa: S608
                    f"WHERE {quote(pk_column)} = %s",
                    [rotated, pk],
                )
            counts[label] = counts.get(label, 0) + len(rows)
    return counts
