"""Every admin changelist runs the same number of queries at 20 and at 100 rows per page
(no query per row), on a fleet large enough to fill both pages."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.devices.factories import make_profile
from tests.portal.fleet_builder import build_fleet

pytestmark = pytest.mark.django_db


def _queries(client, url: str) -> list[str]:  # noqa: ANN001
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code in (200, 302), url
    return [q["sql"] for q in ctx.captured_queries]


def test_changelist_queries_do_not_depend_on_the_page_size(admin_client) -> None:  # noqa: ANN001
    build_fleet(stations=120, certs_per_station=2, profile=make_profile(), now=timezone.now())
    differing = {}
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        before = model_admin.list_per_page
        try:
            admin_client.get(url)
            model_admin.list_per_page = 20
            small = _queries(admin_client, url)
            model_admin.list_per_page = 100
            large = _queries(admin_client, url)
        finally:
            model_admin.list_per_page = before
        if len(small) != len(large):
            differing[model._meta.label] = (len(small), len(large), large[-3:])
    assert differing == {}


def test_no_changelist_filter_scans_a_fleet_sized_table_for_its_values(admin_client) -> None:  # noqa: ANN001
    """A plain field filter (or a date hierarchy) lists its choices with ``SELECT DISTINCT``
    over the whole table: on the tables that grow with the fleet that is a scan per page."""
    build_fleet(stations=12, certs_per_station=2, profile=make_profile(), now=timezone.now())
    fleet_tables = (
        "signing_issuedcertificate",
        "signing_onboardingrequest",
        "devices_mqttdevice",
        "provisioning_awsapicall",
        "portal_auditevent",
    )
    scanning = {}
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        distinct = [
            q
            for q in _queries(admin_client, url)
            if q.lstrip().upper().startswith("SELECT DISTINCT")
        ]
        hits = [
            q
            for q in distinct
            if any(f'FROM "{t}"' in q for t in fleet_tables) and " WHERE " not in q
        ]
        if hits:
            scanning[model._meta.label] = hits
    assert sorted(scanning) == [], scanning


def test_certificates_filter_by_status_in_aws(admin_client) -> None:  # noqa: ANN001
    from signing.models import IssuedCertificate

    build_fleet(stations=3, certs_per_station=1, profile=make_profile(), now=timezone.now())
    first, *_ = IssuedCertificate.objects.order_by("pk")
    IssuedCertificate.objects.filter(pk=first.pk).update(aws_status="REVOKED")
    url = reverse("admin:signing_issuedcertificate_changelist")
    revoked = admin_client.get(url, {"aws_status": "REVOKED"}).context["cl"]
    assert [c.pk for c in revoked.result_list] == [first.pk]
    unobserved = admin_client.get(url, {"aws_status": "-"}).context["cl"]
    assert first.pk not in [c.pk for c in unobserved.result_list]
    assert unobserved.result_count == IssuedCertificate.objects.filter(aws_status="").count()


def test_fleet_lists_write_the_row_checkbox_as_django_does(admin_client) -> None:  # noqa: ANN001
    from django.contrib.admin import ModelAdmin

    from devices.models import Station

    build_fleet(stations=2, certs_per_station=1, profile=make_profile(), now=timezone.now())
    station = Station.objects.order_by("pk").first()
    model_admin = admin.site._registry[Station]
    assert str(model_admin.action_checkbox(station)) == str(
        ModelAdmin.action_checkbox(model_admin, station)
    )
    page = admin_client.get(reverse("admin:devices_station_changelist")).content.decode()
    assert f'name="_selected_action" value="{station.pk}" class="action-select"' in page
