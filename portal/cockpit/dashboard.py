"""The admin's landing page: tiles from the registered providers and two charts.

Every figure is an aggregate: the number of queries is the same for 10 or 10,000 stations.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncDay, TruncMonth
from django.utils import timezone

from signing.models import IssuedCertificate, OnboardingRequest

from .charts import Series, bar_chart
from .registry import SECTIONS, TILE_PROVIDERS, Tile


def _month_starts(now: datetime, months: int) -> list[datetime]:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out = []
    for _ in range(months):
        out.append(first)
        first = (first + timedelta(days=32)).replace(day=1)
    return out


def expiries_per_month(now: datetime, months: int = 12) -> list[tuple[datetime, int]]:
    """Active device certificates expiring in each of the next ``months`` calendar months."""
    starts = _month_starts(timezone.localtime(now), months + 1)
    rows = (
        IssuedCertificate.objects.filter(
            status=IssuedCertificate.Status.ACTIVE,
            not_after__gte=starts[0],
            not_after__lt=starts[-1],
        )
        .annotate(month=TruncMonth("not_after"))
        .order_by()
        .values_list("month")
        .annotate(n=Count("pk"))
    )
    counts = {m.date(): n for m, n in rows}
    return [(s, counts.get(s.date(), 0)) for s in starts[:-1]]


def signings_per_day(now: datetime, days: int = 30) -> list[tuple[datetime, int, int]]:
    """Certificates signed per day over the last ``days`` days: (day, onboardings, renewals),
    from the issued onboarding requests (one per certificate; a partial index covers it)."""
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=days - 1)
    rows = (
        OnboardingRequest.objects.filter(
            status=OnboardingRequest.Status.ISSUED, issued_at__gte=first
        )
        .annotate(day=TruncDay("issued_at"))
        .order_by()
        .values_list("day")
        .annotate(
            initial=Count("pk", filter=Q(is_renewal=False)),
            renewal=Count("pk", filter=Q(is_renewal=True)),
        )
    )
    counts = {d.date(): (a, b) for d, a, b in rows}
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        a, b = counts.get(day.date(), (0, 0))
        out.append((day, a, b))
    return out


def dashboard_context(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    tiles: list[Tile] = [tile for provider in TILE_PROVIDERS for tile in provider(now)]
    sections = [
        {"key": key, "title": title, "tiles": [t for t in tiles if t.section == key]}
        for key, title in SECTIONS.items()
    ]
    months = expiries_per_month(now)
    days = signings_per_day(now)
    return {
        "sections": [s for s in sections if s["tiles"]],
        "expiry_chart": bar_chart(
            title="Device certificate expiries per month (next 12 months)",
            labels=[f"{m:%Y-%m}" for m, _ in months],
            series=[Series("expiring", "#ef6c00", [n for _, n in months])],
        ),
        "signing_chart": bar_chart(
            title="Onboardings and renewals per day (last 30 days)",
            labels=[f"{d:%m-%d}" for d, _, _ in days],
            series=[
                Series("onboardings", "#1565c0", [a for _, a, _ in days]),
                Series("renewals", "#2e7d32", [b for _, _, b in days]),
            ],
            every=5,
        ),
        "expiry_total": sum(n for _, n in months),
        "signing_total": sum(a + b for _, a, b in days),
        "generated_at": now,
    }
