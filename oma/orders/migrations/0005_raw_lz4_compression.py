"""Compress the mirrored raw JSON with lz4 rather than pglz on PostgreSQL servers built with lz4 (PostgreSQL 14+):
every order a sweep writes carries a few kilobytes of raw JSON, which pglz compressed at several times lz4's CPU
cost. Existing values stay as they are until rewritten. Elsewhere (SQLite, a server without lz4) nothing changes."""

from django.db import migrations


def _lz4_available(schema_editor) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
        )
        return cursor.fetchone() is not None


def _set_compression(method: str):
    def apply(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql" or not _lz4_available(schema_editor):
            return
        quote = schema_editor.connection.ops.quote_name
        for model_name in ("Order", "Refund"):
            table = apps.get_model("orders", model_name)._meta.db_table
            schema_editor.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote('raw')} SET COMPRESSION {method}")

    return apply


class Migration(migrations.Migration):
    dependencies = [("orders", "0004_fewer_indexes")]

    operations = [migrations.RunPython(_set_compression("lz4"), _set_compression("pglz"))]
