"""A trigram index for "Common Name contains" searches, on PostgreSQL only (pg_trgm).

The admin's search runs ``UPPER(common_name::text) LIKE UPPER('%term%')``; the GIN index is
on that same expression. Other databases skip both operations.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEX = "signing_cert_cn_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON "signing_issuedcertificate" '
        'USING gin ((UPPER("common_name"::text)) gin_trgm_ops)'
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f'DROP INDEX IF EXISTS "{INDEX}"')


class Migration(migrations.Migration):
    dependencies = [("signing", "0004_changelist_indexes")]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create_index, drop_index),
    ]
