"""Extension points of the cockpit: dashboard tiles, alert conditions and metrics.

A provider is a function registered here; each one runs a few aggregate queries whose count
does not depend on the size of the fleet (no per-row work). Adding a source of attention
items is a few lines::

    @tile_provider
    def audit_tiles(now):
        count = Finding.objects.filter(open=True).count()
        return [Tile("attention", "Fleet-audit findings", count, url, level="error")]

    alert_condition("audit_findings", "Fleet-audit findings")(evaluate_function)

    @metric_provider
    def audit_metrics(now):
        yield gauge("portal_audit_findings", "Open fleet-audit findings", count)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Sections of the dashboard, in page order.
SECTIONS = {
    "health": "Fleet health",
    "attention": "Needs attention now",
    "certificates": "Certificates",
}


@dataclass(frozen=True)
class Tile:
    """One figure on the dashboard, linking to the filtered list behind it."""

    section: str
    title: str
    value: int | str
    url: str = ""
    level: str = "info"  # info | ok | warning | error (colour); attention tiles at 0 are "ok"
    note: str = ""


@dataclass(frozen=True)
class Firing:
    """One active alert: a condition holds for a subject (a CA, an install, "fleet")."""

    subject: str
    summary: str
    severity: str = "warning"  # warning | critical
    # A firing whose level rises (e.g. a CA crossing from 90 to 30 days) is sent again.
    level: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertContext:
    """What a condition may depend on: the time and the channel's own settings."""

    now: datetime
    station_unseen_minutes: int = 60


@dataclass(frozen=True)
class AlertCondition:
    key: str
    label: str
    evaluate: Callable[[AlertContext], list[Firing]]
    sample: Firing | None = None


@dataclass(frozen=True)
class Metric:
    """One metric family for the Prometheus collector (gauge or counter)."""

    name: str
    documentation: str
    kind: str  # "gauge" | "counter"
    labels: tuple[str, ...] = ()
    samples: tuple[tuple[tuple[str, ...], float], ...] = ()


TileProvider = Callable[[datetime], Iterable[Tile]]
MetricProvider = Callable[[datetime], Iterable[Metric]]

TILE_PROVIDERS: list[TileProvider] = []
ALERT_CONDITIONS: dict[str, AlertCondition] = {}
METRIC_PROVIDERS: list[MetricProvider] = []


def tile_provider(func: TileProvider) -> TileProvider:
    if func not in TILE_PROVIDERS:
        TILE_PROVIDERS.append(func)
    return func


def metric_provider(func: MetricProvider) -> MetricProvider:
    if func not in METRIC_PROVIDERS:
        METRIC_PROVIDERS.append(func)
    return func


def alert_condition(
    key: str, label: str, *, sample: Firing | None = None
) -> Callable[[Callable[[AlertContext], list[Firing]]], Callable[[AlertContext], list[Firing]]]:
    def register(
        func: Callable[[AlertContext], list[Firing]],
    ) -> Callable[[AlertContext], list[Firing]]:
        ALERT_CONDITIONS[key] = AlertCondition(key=key, label=label, evaluate=func, sample=sample)
        return func

    return register


def condition_choices() -> list[tuple[str, str]]:
    return [(c.key, c.label) for c in ALERT_CONDITIONS.values()]


def gauge(
    name: str,
    documentation: str,
    value: float | None = None,
    *,
    labels: tuple[str, ...] = (),
    samples: Iterable[tuple[tuple[str, ...], float]] = (),
) -> Metric:
    rows = tuple(samples) if value is None else (((), float(value)),)
    return Metric(name, documentation, "gauge", labels, rows)


def counter(
    name: str,
    documentation: str,
    *,
    labels: tuple[str, ...] = (),
    samples: Iterable[tuple[tuple[str, ...], float]] = (),
) -> Metric:
    return Metric(name, documentation, "counter", labels, tuple(samples))
