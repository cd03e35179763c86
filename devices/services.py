"""Services of the devices app: stations and their tokens."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from portal.services import audit_record
from portal.tokens import hash_token, new_token

from .models import Station


@transaction.atomic
def station_create(
    *, name: str, description: str = "", actor: AbstractBaseUser | AnonymousUser | None = None
) -> tuple[Station, str]:
    """Create a station; returns it with its API token, which is shown this once only."""
    token = new_token()
    station = Station(name=name, description=description, token_hash=hash_token(token),
                      token_prefix=token[:8])
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
