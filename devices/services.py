"""Services of the devices app: stations and their tokens, devices' certificates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, transaction

from portal.services import Actor, audit_record
from portal.tokens import hash_token, new_token

from .models import MqttDevice, Station


@transaction.atomic
def station_create(
    *, name: str, description: str = "", actor: AbstractBaseUser | AnonymousUser | None = None
) -> tuple[Station, str]:
    """Create a station; returns it with its API token, which is shown this once only."""
    token = new_token()
    station = Station(
        name=name, description=description, token_hash=hash_token(token), token_prefix=token[:8]
    )
    station.full_clean()
    station.save()
    audit_record(action="station_create", obj=station, actor=actor)
    return station, token


@transaction.atomic
def station_rotate_token(
    *, station: Station, actor: AbstractBaseUser | AnonymousUser | None = None
) -> str:
    """Give the station a new token; the old one stops working at once."""
    token = new_token()
    station.token_hash = hash_token(token)
    station.token_prefix = token[:8]
    station.save(update_fields=["token_hash", "token_prefix"])
    audit_record(action="station_rotate_token", obj=station, actor=actor)
    return token


@transaction.atomic
def station_token_invalidate(*, station: Station, actor: Actor = None, reason: str = "") -> None:
    """Replace the station's token hash with one of a token nobody knows: the old token stops
    authenticating at once; the station row, its devices and its audit trail stay."""
    station.token_hash = hash_token(new_token())
    station.token_prefix = ""
    station.save(update_fields=["token_hash", "token_prefix"])
    audit_record(
        action="station_token_invalidate",
        obj=station,
        actor=actor,
        detail={"reason": reason[:200]} if reason else None,
    )


def device_certificate_revoked(*, device_id: int, certificate_id: int) -> bool:
    """Show the device as revoked when ``certificate_id`` is its current certificate.

    Called by the signing service inside its revocation transaction. A device whose
    current certificate is another one (a renewal already replaced it) keeps its status.
    """
    return bool(
        MqttDevice.objects.filter(pk=device_id, current_certificate_id=certificate_id).update(
            status=MqttDevice.Status.REVOKED,
            last_error="Its certificate was revoked; a new onboarding request is needed.",
        )
    )


def devices_certificate_issued(*, issued: Sequence[tuple[int, int, str]], now: datetime) -> None:
    """Point each device at its new certificate, in ONE ``UPDATE … FROM (VALUES …)`` statement.

    ``issued`` holds (device id, certificate id, MQTT client id) in signing order; the last
    one of a device wins. The device becomes ``certificate_issued``, unless it is connected
    (a renewal keeps a connected device connected). Raw SQL because it runs once per signing
    batch (~4,000 certificates/s): ``bulk_update`` builds a CASE per field and row, which
    costs more than the signing; the VALUES form works on PostgreSQL and SQLite (>= 3.33).
    """
    latest = {device_id: (cert_id, client_id) for device_id, cert_id, client_id in issued}
    if not latest:
        return
    table = MqttDevice._meta.db_table
    params: list[Any] = []
    if connection.vendor == "postgresql":
        # Three array parameters instead of 600 placeholders.
        source = "unnest(%s::bigint[], %s::bigint[], %s::text[]) AS v(column1, column2, column3)"
        params += [
            list(latest),
            [c for c, _ in latest.values()],
            [client for _, client in latest.values()],
        ]
    else:
        source = f"(VALUES {', '.join(['(%s, %s, %s)'] * len(latest))}) AS v"
        for device_id, (cert_id, client_id) in latest.items():
            params.extend([device_id, cert_id, client_id])
    connected = MqttDevice.Status.CONNECTED
    sql = (
        f'UPDATE "{table}" SET "current_certificate_id" = v.column2, "client_id" = v.column3, '
        f'"status" = CASE WHEN "{table}"."status" = %s THEN %s ELSE %s END, '
        f'"updated_at" = %s FROM {source} WHERE "{table}"."id" = v.column1'
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                connected,
                connected,
                MqttDevice.Status.CERTIFICATE_ISSUED,
                connection.ops.adapt_datetimefield_value(now),
                *params,
            ],
        )
