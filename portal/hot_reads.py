"""The reads every agent request makes (the token lookup, the configuration poll), as
prepared statements.

Why not the ORM: every station polls every 30 s, so these few reads are the portal's hottest
path. Compiling an ORM query costs more CPU than running it, and PostgreSQL spends more time
planning the configuration's joined query than executing it. Here the SQL is written once
(from the models' ``_meta``, so renamed columns follow), PostgreSQL plans it once per
connection (psycopg's ``prepare=True``), and the values pass through the same converters
Django's compiler applies (encrypted fields decrypt, SQLite's datetimes parse).

On PostgreSQL they bypass Django's cursor wrapper, so they add themselves to
``connection.queries`` whenever Django logs queries (DEBUG, ``assertNumQueries``), and
errors still surface as Django's database exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)

Converters = tuple[tuple[Any, list[Callable[..., Any]]], ...]


def model_field(model: type[models.Model], attname: str) -> models.Field:
    """The concrete field of ``model`` whose attribute name is ``attname``."""
    for field in model._meta.concrete_fields:
        if field.attname == attname:
            return field
    raise LookupError(f"{model.__name__} has no column {attname}")


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


def column(model: type[models.Model], attname: str, alias: str) -> str:
    """``alias."column"`` of a model's attribute."""
    name = model_field(model, attname).column
    assert name is not None
    return f"{alias}.{quote(name)}"


def table(model: type[models.Model], alias: str) -> str:
    """``"table" alias``."""
    return f"{quote(model._meta.db_table)} {alias}"


def primary_key(model: type[models.Model], alias: str) -> str:
    """``alias."pk column"``."""
    pk = model._meta.pk
    assert pk is not None
    return column(model, pk.attname, alias)


def converters(fields: Sequence[tuple[models.Field, str]]) -> Converters:
    """Per selected column (field, table alias): the converters Django's compiler applies."""
    out = []
    for field, alias in fields:
        expression = field.get_col(alias)
        out.append(
            (
                expression,
                [
                    *connection.ops.get_db_converters(expression),
                    *field.get_db_converters(connection),
                ],
            )
        )
    return tuple(out)


def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of one read; on PostgreSQL a statement prepared once per connection."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    import psycopg

    connection.close_if_health_check_failed()  # as Django's own cursors do (CONN_HEALTH_CHECKS)
    connection.ensure_connection()
    start = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        rows = list(cursor.fetchall())
    if connection.queries_logged:
        took = time.monotonic() - start
        connection.queries_log.append({"sql": f"{sql} -- {list(params)!r}", "time": f"{took:.3f}"})
    return rows


def convert(values: Sequence[Any], columns: Converters) -> list[Any]:
    """One fetched row's values as the ORM would give them."""
    out = []
    for (expression, funcs), value in zip(columns, values, strict=False):
        if value is not None:
            for func in funcs:
                value = func(value, expression, connection)
        out.append(value)
    return out


@cache
def _select_statement(
    model: type[models.Model], where: str, vendor: str
) -> tuple[str, Converters, list[str]]:
    del vendor  # part of the cache key: quoting and converters depend on the backend
    fields = list(model._meta.concrete_fields)
    sql = (
        f"SELECT {', '.join(column(model, f.attname, 't') for f in fields)} "
        f"FROM {table(model, 't')} WHERE {where} LIMIT 1"
    )
    return sql, converters([(f, "t") for f in fields]), [f.attname for f in fields]


def select_model(model: type[M], where: str, params: Sequence[Any]) -> M | None:
    """The first ``model`` row matching ``where`` (SQL on table alias ``t``), as an instance."""
    sql, columns, attnames = _select_statement(model, where, connection.vendor)
    rows = fetch(sql, params)
    if not rows:
        return None
    return model.from_db(connection.alias, attnames, convert(rows[0], columns))
