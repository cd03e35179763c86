"""The rows of fleet-sized changelists (portal.admin_rows) are Django's rows, cell for cell:
same HTML for every registered fleet list, plain, searched, filtered and sorted."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import results
from django.contrib.auth import get_user_model
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.urls import resolve, reverse
from django.utils import timezone

from portal.admin import FleetListMixin
from portal.admin_rows import FleetChangeList, fleet_results
from portal.models import AuditEvent
from provisioning.aws.models import AwsApiCall
from signing.models import IssuedCertificate
from tests.devices.factories import make_profile
from tests.portal.fleet_builder import build_fleet

pytestmark = pytest.mark.django_db

FLEET_ADMINS = sorted(
    (model._meta.label, model, model_admin)
    for model, model_admin in admin.site._registry.items()
    if isinstance(model_admin, FleetListMixin)
)


def _changelist(model, model_admin, **query: str) -> FleetChangeList:  # noqa: ANN001
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    request = RequestFactory().get(url, query)
    request.resolver_match = resolve(url)
    request.user = get_user_model().objects.get(username="rows-admin")
    request.session = SessionStore()
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    cl = model_admin.get_changelist_instance(request)
    assert isinstance(cl, FleetChangeList)
    cl.formset = None  # as the changelist view sets it for a list without list_editable
    return cl


def _as_html(rows) -> list[list[str]]:  # noqa: ANN001
    return [[str(cell) for cell in row] for row in rows]


@pytest.fixture
def fleet() -> None:
    get_user_model().objects.create_superuser("rows-admin", "rows@example.com", "x")
    build_fleet(stations=6, certs_per_station=2, profile=make_profile(), now=timezone.now())
    cert = IssuedCertificate.objects.order_by("pk").first()
    assert cert is not None
    # Cells of every kind: an empty choice, a revoked status, an empty related object, text
    # that must be escaped, JSON, a call linked to nothing.
    IssuedCertificate.objects.filter(pk=cert.pk).update(
        aws_status="REVOKED", aws_thing="<b>thing</b>", aws_observed_at=timezone.now()
    )
    AuditEvent.objects.create(
        action="revoke", object_type="certificate", object_id="1", object_repr="<i>x & y</i>"
    )
    AwsApiCall.objects.create(
        service="iot", operation="UpdateCertificate", parameters={"a": "<b>"}, error_code="X"
    )


def test_every_fleet_list_writes_the_same_rows_as_django(fleet: None) -> None:
    assert FLEET_ADMINS, "no fleet-sized admin registered"
    compared = 0
    for label, model, model_admin in FLEET_ADMINS:
        cl = _changelist(model, model_admin)
        ours, django = _as_html(fleet_results(cl)), _as_html(results(cl))
        assert ours == django, label
        compared += len(ours)
    assert compared > 20


@pytest.mark.parametrize(
    "query",
    [
        {"q": "st-0000"},
        {"status__exact": "active", "o": "-4.2"},
        {"aws_status": "REVOKED"},
        {"q": "<b>"},
    ],
)
def test_certificate_rows_searched_filtered_and_sorted_match_django(
    fleet: None, query: dict[str, str]
) -> None:
    model_admin = admin.site.get_model_admin(IssuedCertificate)
    cl = _changelist(IssuedCertificate, model_admin, **query)
    ours, django = _as_html(fleet_results(cl)), _as_html(results(cl))
    assert ours == django
    if "q" in query and query["q"].startswith("st-"):
        # The preserved filters reach each row's link, as in Django's rows.
        assert ours
        assert "_changelist_filters=q%3Dst-0000" in ours[0][1]


def test_a_fleet_list_page_renders_its_rows(fleet: None, admin_client) -> None:  # noqa: ANN001
    response = admin_client.get(reverse("admin:signing_issuedcertificate_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('class="action-select"') == IssuedCertificate.objects.count()
    assert "&lt;b&gt;thing&lt;/b&gt;" in body
    assert "<b>thing</b>" not in body
