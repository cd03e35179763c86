"""The certificate list, its detail page and the device page show the AWS twin and whether a
renewal has proven itself, without a query per row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from devices.services import station_create
from signing.models import IssuedCertificate
from signing.services import (
    certificate_aws_observed,
    onboarding_request_submit,
    onboarding_requests_approve,
    onboarding_requests_sign,
)
from tests.signing.conftest import make_ec_csr


def _issue(station, name: str, *, renewal: bool = False) -> IssuedCertificate:  # noqa: ANN001
    request, _ = onboarding_request_submit(
        station=station, device_name=name, csr=make_ec_csr(), renewal=renewal
    )
    onboarding_requests_approve(ids=[request.pk])
    onboarding_requests_sign(ids=[request.pk])
    return IssuedCertificate.objects.get(request=request)


@pytest.mark.django_db
def test_twin_and_unproven_renewal_on_list_detail_and_device(admin_client, profile) -> None:  # noqa: ANN001
    station, _ = station_create(name="st-twin")
    old = _issue(station, "dev")
    certificate_aws_observed(
        certificate=old,
        status="ACTIVE",
        thing=old.common_name,
        policies=["JITP-abc"],
        observed_at=timezone.now(),
        note="",
    )
    IssuedCertificate.objects.filter(pk=old.pk).update(
        renew_after=timezone.now() - timedelta(minutes=1)
    )
    new = _issue(station, "dev")  # a second certificate of the device (as a renewal gives)
    for i in range(5):  # more rows: the query count must not grow with them
        _issue(station, f"other-{i}")

    changelist = reverse("admin:signing_issuedcertificate_changelist")
    admin_client.get(changelist)
    with CaptureQueriesContext(connection) as few:
        page = admin_client.get(changelist).content.decode()
    assert "renewed, not yet proven on a connection (this one stays active)" in page
    assert "renewal, not yet proven on a connection" in page
    assert "JITP-abc" not in page  # policies are on the detail page
    _issue(station, "more")
    with CaptureQueriesContext(connection) as more:
        admin_client.get(changelist)
    assert len(more.captured_queries) == len(few.captured_queries)

    detail = admin_client.get(
        reverse("admin:signing_issuedcertificate_change", args=[old.pk])
    ).content.decode()
    assert old.aws_certificate_id in detail
    assert "JITP-abc" in detail
    assert old.common_name in detail

    device = admin_client.get(
        reverse("admin:devices_mqttdevice_change", args=[new.device_id])
    ).content.decode()
    assert "Renewed, not yet proven on a connection" in device
    assert "not observed in AWS yet" in device
