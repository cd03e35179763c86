"""Reads of the devices app that more than one door needs."""
from __future__ import annotations

from portal.tokens import hash_token

from .models import Station


def station_for_token(token: str) -> Station | None:
    if not token or len(token) > 200:
        return None
    return Station.objects.filter(token_hash=hash_token(token)).first()
