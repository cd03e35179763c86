"""What the AWS action outbox (provisioning.lifecycle) contributes: failing actions as a
dashboard tile, an alert condition and metrics."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from provisioning.lifecycle.models import AwsAction

from .links import changelist
from .providers import count_by
from .registry import (
    AlertContext,
    Firing,
    Metric,
    Tile,
    alert_condition,
    gauge,
    metric_provider,
    tile_provider,
)

FAILED = AwsAction.Status.FAILED


@tile_provider
def aws_action_tiles(now: datetime) -> Iterable[Tile]:
    failed = AwsAction.objects.filter(status=FAILED).count()
    url = changelist("provisioning", "awsaction", status__exact=FAILED)
    yield Tile("attention", "AWS actions failed", failed, url, "error" if failed else "ok")


@alert_condition("aws_actions_failed", "Failing AWS actions (the outbox gave up on them)")
def aws_actions_failed(ctx: AlertContext) -> list[Firing]:
    rows = count_by(AwsAction.objects.filter(status=FAILED), "kind")
    return [
        Firing(
            f"kind-{kind}",
            f"{n} AWS actions '{AwsAction.Kind(kind).label}' failed.",
            detail={"kind": kind, "count": n},
        )
        for kind, n in rows
    ]


@metric_provider
def aws_action_metrics(now: datetime) -> Iterable[Metric]:
    counts = dict(count_by(AwsAction.objects.all(), "status"))
    yield gauge(
        "portal_aws_actions",
        "AWS actions in the outbox by status.",
        labels=("status",),
        samples=(((s,), counts.get(s, 0)) for s in AwsAction.Status.values),
    )
