"""GET /metrics: the domain's gauges for a fixture fleet, parsed by prometheus_client's own
text parser; a bearer token from METRICS_TOKEN, 404 while it is unset."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from provisioning.aws.models import AwsApiCall
from tests.devices.factories import make_profile
from tests.portal.fleet_builder import build_fleet

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-for-tests-1"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_show_the_fleet(client, settings) -> None:  # noqa: ANN001
    settings.METRICS_TOKEN = TOKEN
    now = timezone.now()
    fleet = build_fleet(stations=21, certs_per_station=2, profile=make_profile(), now=now)
    AwsApiCall.objects.bulk_create(
        [
            AwsApiCall(service="iot", operation="CreateThing"),
            AwsApiCall(service="iot", operation="CreateThing", error_code="ThrottlingException"),
            AwsApiCall(service="iot", operation="DescribeEndpoint"),
            AwsApiCall(service="iot", operation="DescribeEndpoint", at=now - timedelta(hours=2)),
        ]
    )
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    m = _samples(response.content.decode())
    for status, n in fleet.devices_by_status.items():
        assert m[("portal_devices", (("status", status),))] == n
    assert m[("portal_stations", (("health", "online"),))] == fleet.online
    assert m[("portal_stations", (("health", "never"),))] == fleet.never
    assert m[("portal_onboarding_requests", (("status", "pending"),))] == fleet.pending
    assert m[("portal_onboarding_requests", (("status", "failed"),))] == fleet.failed
    assert m[("portal_certificates_expiring_30d", ())] == fleet.expiring_30d
    assert m[("portal_certificates_signed_total", (("kind", "onboarding"),))] == 21
    assert m[("portal_certificates_signed_total", (("kind", "renewal"),))] == 21
    assert m[("portal_aws_calls_last_hour", (("operation", "CreateThing"),))] == 2
    assert m[("portal_aws_errors_last_hour", (("operation", "CreateThing"),))] == 1
    assert m[("portal_aws_calls_last_hour", (("operation", "DescribeEndpoint"),))] == 1
    assert 29 * 86400 < m[("portal_ca_expiry_seconds", (("ca", "test-ca"),))] <= 30 * 86400
    assert m[("portal_broker_up", ())] == 1  # the filesystem broker of the tests
    assert m[("portal_celery_queue_depth", (("queue", "signing"),))] >= 0


def test_metrics_need_the_token(client, settings) -> None:  # noqa: ANN001
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


def test_metrics_are_off_without_a_token(client, settings) -> None:  # noqa: ANN001
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_queue_depth_on_redis(settings) -> None:  # noqa: ANN001
    import redis

    url = "redis://127.0.0.1:6379/11"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
    except redis.RedisError:
        pytest.skip("No Redis at 127.0.0.1:6379.")
    from portal.cockpit.metrics import queue_depths

    client.delete("signing", "default", "fleet")
    client.rpush("signing", "a", "b", "c")
    settings.CELERY_BROKER_URL = url
    try:
        assert queue_depths() == {"default": 0, "signing": 3, "fleet": 0}
    finally:
        client.delete("signing")


def test_failing_aws_actions_on_the_dashboard_in_alerts_and_metrics(  # noqa: ANN001
    admin_client, client, settings
) -> None:
    from portal.cockpit.registry import ALERT_CONDITIONS, AlertContext
    from provisioning.lifecycle.models import AwsAction

    settings.METRICS_TOKEN = TOKEN
    for i, status in enumerate(["failed", "failed", "pending", "done"]):
        AwsAction.objects.create(kind="deactivate", status=status, aws_certificate_id=f"c{i}")
    AwsAction.objects.create(kind="delete", status="failed", aws_certificate_id="c9")
    page = admin_client.get("/admin/")
    [tile] = [
        t for s in page.context["sections"] for t in s["tiles"] if t.title == "AWS actions failed"
    ]
    assert tile.value == 3
    assert admin_client.get(tile.url).context["cl"].result_count == 3
    firings = ALERT_CONDITIONS["aws_actions_failed"].evaluate(AlertContext(now=timezone.now()))
    assert sorted((f.subject, f.detail["count"]) for f in firings) == [
        ("kind-deactivate", 2),
        ("kind-delete", 1),
    ]
    m = _samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert m[("portal_aws_actions", (("status", "failed"),))] == 3
    assert m[("portal_aws_actions", (("status", "pending"),))] == 1
