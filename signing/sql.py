"""Every raw SQL statement of the signing app: the hot path of approval and signing batches.

Why not the ORM here: ``bulk_create`` of a few hundred certificate rows spent more CPU on
model instances and per-field preparation than the signing itself. These helpers send ONE
statement per call with values already in database form, and work on PostgreSQL and SQLite
(>= 3.35, for ``RETURNING``) alike. They are only used inside the services' transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, models

from devices.models import MqttDevice, Station

from .models import CommonNameOwner, OnboardingRequest


def _qcol(field: models.Field | None) -> str:
    """The quoted column name of a concrete field."""
    assert field is not None
    assert field.column is not None
    return connection.ops.quote_name(field.column)


def _preparer(field: models.Field) -> Callable[[Any], Any] | None:
    """The conversion of a Python value to its database form, None when there is none."""
    if isinstance(field, models.DateTimeField):
        return connection.ops.adapt_datetimefield_value
    if isinstance(field, models.JSONField):
        return lambda value: field.get_db_prep_save(value, connection)
    return None


def insert_rows(
    model: type[models.Model],
    *,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    constants: dict[str, Any] | None = None,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """``INSERT INTO … VALUES (…), (…) [RETURNING …]`` in one statement.

    ``columns`` name the per-row values (attribute names: ``device_id`` for a foreign key);
    ``constants`` are the same for every row and prepared once. Every other concrete field
    gets its model default (computed once; nullable fields without default stay NULL), so a
    field added to the model later keeps working as with ``bulk_create``. ``returning`` may
    name the primary key and any written column (match rows by a written column: SQLite
    does not promise an order). On PostgreSQL the rows are sent with ``COPY``
    (see :func:`_copy_rows`).
    """
    if not rows:
        return []
    meta = model._meta
    by_attname = {f.attname: f for f in meta.concrete_fields}
    constants = dict(constants or {})
    for attname, field in by_attname.items():
        if field.primary_key or attname in constants or attname in columns:
            continue
        if field.has_default() or not field.null:
            constants[attname] = field.get_default()  # "" for text without default
    const_values = []
    for attname, value in constants.items():
        prepare = _preparer(by_attname[attname])
        const_values.append(prepare(value) if prepare else value)
    preparers = [_preparer(by_attname[c]) for c in columns]
    params: list[Any] = []
    if any(preparers):
        for row in rows:
            params.extend(p(v) if p else v for p, v in zip(preparers, row, strict=True))
            params.extend(const_values)
    else:
        for row in rows:
            params.extend(row)
            params.extend(const_values)
    qn = connection.ops.quote_name
    if connection.vendor == "postgresql":
        return _copy_rows(
            model,
            columns=[*columns, *constants],
            params=params,
            width=len(columns) + len(constants),
            returning=returning,
        )
    names = ", ".join(_qcol(by_attname[a]) for a in [*columns, *constants])
    one = "(" + ", ".join(["%s"] * (len(columns) + len(constants))) + ")"
    sql = f"INSERT INTO {qn(meta.db_table)} ({names}) VALUES {', '.join([one] * len(rows))}"
    if returning:
        sql += " RETURNING " + ", ".join(_qcol(by_attname[a]) for a in returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(r) for r in cursor.fetchall()] if returning else []


def _copy_rows(
    model: type[models.Model],
    *,
    columns: Sequence[str],
    params: list[Any],
    width: int,
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """PostgreSQL: ``COPY … FROM STDIN`` (primary keys drawn from the sequence first).

    A multi-row INSERT of 200 certificates has 3,000 placeholders: psycopg spent ~7 ms
    splitting the statement and PostgreSQL more parsing it; COPY streams the rows.
    """
    meta = model._meta
    qn = connection.ops.quote_name
    by_attname = {f.attname: f for f in meta.concrete_fields}
    pk = meta.pk
    assert pk is not None
    count = len(params) // width
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, pk.column, count],
        )
        ids = [r[0] for r in cursor.fetchall()]
        names = ", ".join(_qcol(by_attname[a]) for a in [pk.attname, *columns])
        with cursor.cursor.copy(f"COPY {qn(meta.db_table)} ({names}) FROM STDIN") as copy:
            for i, pk_value in enumerate(ids):
                copy.write_row((pk_value, *params[i * width : (i + 1) * width]))
    if not returning:
        return []
    index = {a: n for n, a in enumerate(columns)}
    picks = [None if a == pk.attname else index[a] for a in returning]
    return [
        tuple(pk_value if p is None else params[i * width + p] for p in picks)
        for i, pk_value in enumerate(ids)
    ]


def update_returning_ids(
    model: type[models.Model],
    *,
    ids: Sequence[int] | None,
    where: dict[str, Any],
    values: dict[str, Any],
) -> list[int]:
    """``UPDATE … SET … WHERE [id IN ids AND] col = … RETURNING id``: which rows changed.

    A ``where`` value that is a list, tuple or set means ``col IN (…)``. One statement
    instead of lock-then-update; on PostgreSQL the row locks it takes and the re-check of
    ``where`` after a concurrent change make it race-free by itself.
    """
    if ids is not None and not ids:
        return []
    meta = model._meta
    by_attname = {f.attname: f for f in meta.concrete_fields}
    qn = connection.ops.quote_name

    def prepared(attname: str, value: Any) -> Any:
        prepare = _preparer(by_attname[attname])
        return prepare(value) if prepare else value

    sets = ", ".join(f"{_qcol(by_attname[a])} = %s" for a in values)
    params = [prepared(a, v) for a, v in values.items()]
    conds = []
    for attname, value in where.items():
        if isinstance(value, list | tuple | set | frozenset):
            conds.append(f"{_qcol(by_attname[attname])} IN ({', '.join(['%s'] * len(value))})")
            params.extend(prepared(attname, v) for v in sorted(value))
        else:
            conds.append(f"{_qcol(by_attname[attname])} = %s")
            params.append(prepared(attname, value))
    if ids is not None:
        conds.append(f"{_qcol(meta.pk)} IN ({', '.join(['%s'] * len(ids))})")
        params.extend(ids)
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {sets} WHERE {' AND '.join(conds)} "
        f"RETURNING {_qcol(meta.pk)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return sorted(r[0] for r in cursor.fetchall())


def advisory_lock(key: str) -> None:
    """PostgreSQL: a transaction-scoped advisory lock on ``key`` (waits for its holder).

    Serialises check-then-insert sequences on one value (e.g. a public key) across
    transactions that share no row to lock. SQLite needs none: one writer at a time.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def jit_off() -> None:
    """PostgreSQL: no JIT compilation for this transaction's short statements.

    Without fresh statistics (a table that just grew by thousands of rows, or autovacuum
    off) the planner overestimates these statements and JIT-compiles them: ~10 ms per
    statement for work that takes well under 1 ms.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


def requests_claim_postgresql(
    *,
    ids: Sequence[int],
    from_statuses: Sequence[str],
    to_status: str,
    now: datetime,
) -> list[tuple[Any, ...]]:
    """PostgreSQL: lock the requests among ``ids``, flip those in ``from_statuses`` to
    ``to_status`` (``issued_at = now``) and return what signing needs, in ONE statement.

    Rows another worker holds are skipped (``SKIP LOCKED``). The CTE looks the batch up by
    primary key only, so no planner (stale statistics right after a bulk approval) can pick
    the status index and scan every approved row; FOR UPDATE returns each row's latest
    version, whose status is then checked. One tuple version per row instead of a lock and
    then an update. Each tuple: id, csr_pem, public_key_fingerprint, profile_id, device_id,
    is_renewal, station name, device name.
    """
    qn = connection.ops.quote_name
    requests = qn(OnboardingRequest._meta.db_table)
    sql = (
        f"WITH batch AS MATERIALIZED (SELECT id, status FROM {requests} "
        "WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED) "
        f"UPDATE {requests} AS r SET status = %s, issued_at = %s "
        f"FROM batch, {qn(MqttDevice._meta.db_table)} AS d, "
        f"{qn(Station._meta.db_table)} AS s "
        "WHERE r.id = batch.id AND batch.status = ANY(%s) "
        "AND d.id = r.device_id AND s.id = r.station_id "
        "RETURNING r.id, r.csr_pem, r.public_key_fingerprint, r.profile_id, r.device_id, "
        "r.is_renewal, s.name, d.name"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[int(i) for i in ids], to_status, now, list(from_statuses)])
        return [tuple(r) for r in cursor.fetchall()]


def common_names_claim(*, claims: dict[str, int], now: datetime) -> dict[str, int]:
    """Claim each CN -> device id in ``claims`` for that device; returns CN -> its owner.

    ONE ``INSERT … ON CONFLICT (common_name) DO UPDATE … RETURNING`` into the CN owner table:
    a new CN becomes the claiming device's; a CN already owned comes back with its owner
    (the no-op update locks that row and returns its latest committed version). A CN that
    another transaction has just inserted makes this statement wait for it, then see its
    owner: two workers racing for one CN end with one owner, whatever the isolation
    level. Rows go in sorted by CN, so two batches lock in the same order (no deadlock).
    """
    if not claims:
        return {}
    meta = CommonNameOwner._meta
    by_attname = {f.attname: f for f in meta.concrete_fields}
    table = connection.ops.quote_name(meta.db_table)
    cn_col, device_col, at_col = (
        _qcol(by_attname[n]) for n in ("common_name", "device_id", "created_at")
    )
    ordered = sorted(claims.items())
    at = connection.ops.adapt_datetimefield_value(now)
    params: list[Any]
    if connection.vendor == "postgresql":
        source = (
            "SELECT v.cn, v.dev, %s FROM unnest(%s::text[], %s::bigint[]) "
            "WITH ORDINALITY AS v(cn, dev, n) ORDER BY v.n"
        )
        params = [at, [cn for cn, _ in ordered], [d for _, d in ordered]]
    else:
        # SQLite: "INSERT … SELECT … ON CONFLICT" needs a WHERE to parse; VALUES does not.
        source = "VALUES " + ", ".join(["(%s, %s, %s)"] * len(ordered))
        params = [v for cn, d in ordered for v in (cn, d, at)]
    sql = (
        f"INSERT INTO {table} ({cn_col}, {device_col}, {at_col}) {source} "
        f"ON CONFLICT ({cn_col}) DO UPDATE SET {cn_col} = EXCLUDED.{cn_col} "
        f"RETURNING {cn_col}, {device_col}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall())
