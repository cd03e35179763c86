"""The reads behind every agent poll and state report, as prepared statements
(portal.hot_reads): every agent polls every 30 s.

- :func:`station_device_rows`: ``GET /api/v1/agent/config``: a station's devices with what
  their configuration needs (signing profile, current certificate, bound connection) and
  whether a running fleet install waits for the station to fetch them.
- :func:`station_in_running_install`: ``POST /api/v1/agent/state``: whether a running fleet
  install has a row of this station that is not final (most reports: no).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection, models

from devices.models import MqttDevice
from portal.hot_reads import Converters, column, convert, converters, fetch, model_field, table
from portal.hot_reads import primary_key as pk
from signing.models import IssuedCertificate, SigningProfile

from ..connections.models import Connection
from ..jobs.models import Job
from .models import FleetInstall, FleetInstallStation

#: The columns of one row, as (name in the row dict, model, attribute name, table alias).
COLUMNS: tuple[tuple[str, type[models.Model], str, str], ...] = (
    ("name", MqttDevice, "name", "d"),
    ("endpoint", MqttDevice, "endpoint", "d"),
    ("port", MqttDevice, "port", "d"),
    ("key_password", MqttDevice, "key_password", "d"),
    ("comment", MqttDevice, "onboarding_comment", "d"),
    ("connection_id", MqttDevice, "connection_id", "d"),
    ("accepted_key_types", SigningProfile, "accepted_key_types", "p"),
    ("renew_after", IssuedCertificate, "renew_after", "c"),
    ("renewal_forced_at", IssuedCertificate, "renewal_forced_at", "c"),
    ("certificate_serial", IssuedCertificate, "serial", "c"),
    ("certificate_status", IssuedCertificate, "status", "c"),
    ("connection_name", Connection, "name", "n"),
    ("connection_endpoint", Connection, "endpoint", "n"),
    ("connection_updated_at", Connection, "updated_at", "n"),
    ("uplink_topic_pattern", Connection, "uplink_topic_pattern", "n"),
    ("downlink_topic_pattern", Connection, "downlink_topic_pattern", "n"),
)


def _install_rows_with_job() -> str:
    """Fleet-install rows ``s`` joined to their install ``i`` and its job ``j``."""
    fis, install = FleetInstallStation, FleetInstall
    return (
        f"{table(fis, 's')} "
        f"JOIN {table(install, 'i')} ON {pk(install, 'i')} = {column(fis, 'install_id', 's')} "
        f"JOIN {table(Job, 'j')} ON {pk(Job, 'j')} = {column(install, 'job_id', 'i')}"
    )


def _left_join(model: type[models.Model], alias: str, on: str) -> str:
    return f"LEFT JOIN {table(model, alias)} ON {pk(model, alias)} = {on}"


@cache
def _statement(vendor: str) -> tuple[str, Converters]:
    """The SQL for this database vendor and its columns' converters."""
    del vendor  # the cache key: quoting and converters depend on the backend
    select = ", ".join(column(model, attname, alias) for _, model, attname, alias in COLUMNS)
    fis = FleetInstallStation
    waiting = (
        f"EXISTS (SELECT 1 FROM {_install_rows_with_job()} "
        f"WHERE {column(fis, 'device_id', 's')} = {pk(MqttDevice, 'd')} "
        f"AND {column(fis, 'status', 's')} = %s AND {column(fis, 'dispatched_at', 's')} "
        f"IS NOT NULL AND {column(Job, 'status', 'j')} = %s)"
    )
    sql = " ".join(
        [
            f"SELECT {select}, {waiting} FROM {table(MqttDevice, 'd')}",
            _left_join(SigningProfile, "p", column(MqttDevice, "signing_profile_id", "d")),
            _left_join(IssuedCertificate, "c", column(MqttDevice, "current_certificate_id", "d")),
            _left_join(Connection, "n", column(MqttDevice, "connection_id", "d")),
            f"WHERE {column(MqttDevice, 'station_id', 'd')} = %s",
            f"ORDER BY {column(MqttDevice, 'name', 'd')}",
        ]
    )
    fields = [(model_field(model, attname), alias) for _, model, attname, alias in COLUMNS]
    return sql, converters(fields)


def station_device_rows(station_id: int) -> list[dict[str, Any]]:
    """One dict per device of the station (by name), keys as in :data:`COLUMNS` plus
    ``awaiting_delivery``; values as the ORM would give them (None where nothing joins)."""
    sql, columns = _statement(connection.vendor)
    params = [FleetInstallStation.Status.QUEUED.value, Job.Status.RUNNING.value, station_id]
    names = [name for name, *_ in COLUMNS]
    rows = []
    for values in fetch(sql, params):
        row = dict(zip(names, convert(values, columns), strict=True))
        row["awaiting_delivery"] = bool(values[-1])
        rows.append(row)
    return rows


#: The statuses a fleet-install row ends in, as statement parameters.
_FINAL = tuple(sorted(str(status) for status in FleetInstallStation.TERMINAL))


@cache
def _in_running_install_statement(vendor: str) -> str:
    del vendor  # the cache key: quoting depends on the backend
    fis = FleetInstallStation
    final = ", ".join(["%s"] * len(_FINAL))
    return (
        f"SELECT 1 FROM {_install_rows_with_job()} "
        f"WHERE {column(fis, 'station_id', 's')} = %s AND {column(Job, 'status', 'j')} = %s "
        f"AND {column(fis, 'status', 's')} NOT IN ({final}) LIMIT 1"
    )


def station_in_running_install(station_id: int) -> bool:
    """Whether a running fleet install has a row of this station that is not final."""
    sql = _in_running_install_statement(connection.vendor)
    return bool(fetch(sql, [station_id, Job.Status.RUNNING.value, *_FINAL]))
