"""Reads of the devices app that more than one door needs: token lookup, station health."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from portal.hot_reads import column, select_model
from portal.tokens import hash_token

from .models import Station


def station_for_token(token: str) -> Station | None:
    """The station whose API token this is, or None (every agent request asks: a prepared
    statement, see portal.hot_reads)."""
    if not token or len(token) > 200:
        return None
    where = f"{column(Station, 'token_hash', 't')} = %s"
    return select_model(Station, where, [hash_token(token)])


HEALTH_ONLINE = "online"
HEALTH_STALE = "stale"
HEALTH_NEVER = "never"
HEALTH_CHOICES = [(HEALTH_ONLINE, "Online"), (HEALTH_STALE, "Stale"), (HEALTH_NEVER, "Never seen")]


def station_online_since(now: datetime | None = None) -> datetime:
    """Stations seen after this instant count as online (STATION_ONLINE_SECONDS)."""
    return (now or timezone.now()) - timedelta(seconds=settings.STATION_ONLINE_SECONDS)


def station_health(station: Station, now: datetime | None = None) -> str:
    if station.last_seen_at is None:
        return HEALTH_NEVER
    return HEALTH_ONLINE if station.last_seen_at >= station_online_since(now) else HEALTH_STALE


def stations_with_health(qs: QuerySet[Station], health: str) -> QuerySet[Station]:
    since = station_online_since()
    if health == HEALTH_ONLINE:
        return qs.filter(last_seen_at__gte=since)
    if health == HEALTH_STALE:
        return qs.filter(last_seen_at__lt=since)
    if health == HEALTH_NEVER:
        return qs.filter(last_seen_at__isnull=True)
    return qs
