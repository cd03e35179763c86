"""GET /metrics: Prometheus text exposition of the domain's figures, computed at scrape time.

prometheus_client's custom Collector runs the registered metric providers (a few aggregate
queries) on each scrape; nothing is counted in-process, so every web process answers the same
and a restart loses nothing. Protected by ``Authorization: Bearer <METRICS_TOKEN>``; the
endpoint does not exist (404) while METRICS_TOKEN is unset.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .registry import METRIC_PROVIDERS, gauge, metric_provider
from .registry import Metric as DomainMetric

QUEUES = ("default", "signing", "fleet")


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue: LLEN on Redis, files on the filesystem
    transport; None for another broker (the metric is left out)."""
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            with client.pipeline(transaction=False) as pipe:
                for queue in QUEUES:
                    pipe.llen(queue)
                return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))
        finally:
            client.close()
    if url.startswith("filesystem://"):
        folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
        counts = dict.fromkeys(QUEUES, 0)
        with os.scandir(folder) as entries:  # kombu names them <time>_<uuid>.<queue>.msg
            for entry in entries:
                parts = entry.name.rsplit(".", 2)
                if len(parts) == 3 and parts[2] == "msg" and parts[1] in counts:
                    counts[parts[1]] += 1
        return counts
    return None


@metric_provider
def celery_metrics(now: object) -> Iterator[DomainMetric]:
    try:
        depths = queue_depths()
    except Exception:  # noqa: BLE001 - an unreachable broker must not fail the scrape
        depths = None
    yield gauge(
        "portal_broker_up",
        "1 when the Celery broker answered this scrape.",
        0 if depths is None else 1,
    )
    if depths is not None:
        yield gauge(
            "portal_celery_queue_depth",
            "Messages waiting in each Celery queue.",
            labels=("queue",),
            samples=(((q,), n) for q, n in depths.items()),
        )


class DomainCollector(Collector):
    """Turns the registered providers' figures into Prometheus metric families."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        for provider in METRIC_PROVIDERS:
            for item in provider(now):
                family_cls = GaugeMetricFamily if item.kind == "gauge" else CounterMetricFamily
                family = family_cls(item.name, item.documentation, labels=list(item.labels))
                for values, value in item.samples:
                    family.add_metric(list(values), value)
                yield family


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DomainCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = getattr(settings, "METRICS_TOKEN", "") or ""
    if not token:
        raise Http404("Metrics are off (METRICS_TOKEN is unset).")
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        response = HttpResponse(
            "A valid bearer token is required.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
