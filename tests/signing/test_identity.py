"""One identity per device: injective CN templates, one owner per CN, one device per key."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from devices.services import station_create
from signing.csr import csr_validate
from signing.models import CommonNameOwner, IssuedCertificate, OnboardingRequest, SigningProfile
from signing.services import (
    cn_render,
    cn_template_validate,
    onboarding_request_submit,
    onboarding_requests_approve,
    onboarding_requests_sign,
)
from tests.signing.conftest import make_ec_csr

URL = "/api/v1/onboarding-requests"
LEGACY = "{station}-{device}"  # ambiguous: what older profiles may still hold


def post(client, token: str, device: str, csr: str):  # noqa: ANN001, ANN201
    return client.post(
        URL,
        data=json.dumps({"device": device, "csr": csr}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.mark.parametrize(
    "template",
    ["{station}-{device}", "{station}{device}", "{station}_{device}", "{device}-{serial}"],
)
def test_templates_that_could_name_two_devices_alike_are_refused(template: str) -> None:
    with pytest.raises(ValidationError) as exc:
        cn_template_validate(template)
    assert "Put a ':' between" in exc.value.message_dict["cn_template"][0]


@pytest.mark.parametrize("template", ["{device}", "dev:{device}", "{device}:{device}"])
def test_a_template_without_a_station_unique_part_is_refused(template: str) -> None:
    with pytest.raises(ValidationError) as exc:
        cn_template_validate(template)
    assert "unique only within a station" in exc.value.message_dict["cn_template"][0]


ACCEPTED = [
    "{station}:{device}",
    "{device}:{station}",
    "fleet-{station}:{device}-x",
    "{station}::{device}",
    "{station}:{device}:{serial}",
]


@pytest.mark.parametrize("template", ACCEPTED)
def test_every_accepted_template_maps_cns_to_one_station_and_device(template: str) -> None:
    cn_template_validate(template)
    # every name of up to three characters over an alphabet that has the separators names
    # may contain: no two (station, device) pairs give one CN
    alphabet = "a-_"
    names = [
        "".join(p)
        for n in (1, 2, 3)
        for p in itertools.product(alphabet, repeat=n)
        if p[0].isalnum()
    ]
    seen: dict[str, tuple[str, str]] = {}
    for station, device in itertools.product(names, repeat=2):
        cn = cn_render(template, station=station, device=device, serial="1f")
        assert seen.setdefault(cn, (station, device)) == (station, device), cn


def test_a_template_with_a_serial_but_no_station_is_accepted() -> None:
    # a new CN per certificate: the serial (159 random bits) is what makes it unique
    cn_template_validate("{device}:{serial}")


@pytest.mark.django_db
def test_the_ambiguous_pair_gets_two_different_cns_by_default(profile) -> None:  # noqa: ANN001
    assert profile.cn_template == "{station}:{device}"
    sta, _ = station_create(name="sta")
    sta_x, _ = station_create(name="sta-x")
    a, _ = onboarding_request_submit(station=sta, device_name="x-victim", csr=make_ec_csr())
    b, _ = onboarding_request_submit(station=sta_x, device_name="victim", csr=make_ec_csr())
    onboarding_requests_approve(ids=[a.pk, b.pk])
    assert onboarding_requests_sign(ids=[a.pk, b.pk]).issued == 2
    assert sorted(IssuedCertificate.objects.values_list("common_name", flat=True)) == [
        "sta-x:victim",
        "sta:x-victim",
    ]


def _legacy(profile: SigningProfile) -> None:
    """A profile saved before the ':' rule (an update bypasses the validation)."""
    SigningProfile.objects.filter(pk=profile.pk).update(cn_template=LEGACY)


def _pair() -> tuple[OnboardingRequest, OnboardingRequest]:
    sta, _ = station_create(name="sta")
    sta_x, _ = station_create(name="sta-x")
    a, _ = onboarding_request_submit(station=sta, device_name="x-victim", csr=make_ec_csr())
    b, _ = onboarding_request_submit(station=sta_x, device_name="victim", csr=make_ec_csr())
    return a, b


def _issued_cns() -> list[tuple[str, int]]:
    return list(
        IssuedCertificate.objects.filter(common_name="sta-x-victim").values_list(
            "common_name", "device_id"
        )
    )


@pytest.mark.django_db
def test_api_submit_refuses_a_cn_that_belongs_to_another_device(client, profile) -> None:  # noqa: ANN001
    _legacy(profile)
    _, token_a = station_create(name="sta")
    _, token_b = station_create(name="sta-x")
    first = post(client, token_a, "x-victim", make_ec_csr())
    assert first.status_code == 201
    onboarding_requests_approve(ids=[first.json()["id"]])
    assert onboarding_requests_sign(ids=[first.json()["id"]]).issued == 1
    second = post(client, token_b, "victim", make_ec_csr())
    assert second.status_code == 422
    assert second.json()["code"] == "common_name_in_use"
    assert "'sta-x-victim' already belongs to another device" in second.json()["detail"]
    assert len(_issued_cns()) == 1


@pytest.mark.django_db
def test_one_batch_with_both_issues_one_and_fails_the_other_with_a_sentence(profile) -> None:  # noqa: ANN001
    _legacy(profile)
    a, b = _pair()
    other, _ = onboarding_request_submit(
        station=a.station, device_name="bystander", csr=make_ec_csr()
    )
    onboarding_requests_approve(ids=[a.pk, b.pk, other.pk])
    result = onboarding_requests_sign(ids=[a.pk, b.pk, other.pk])
    assert (result.issued, result.failed) == (2, 1)
    b.refresh_from_db()
    assert b.status == "failed"
    assert "'sta-x-victim' already belongs to another device" in b.reason
    assert _issued_cns() == [("sta-x-victim", a.device_id)]
    assert CommonNameOwner.objects.get(common_name="sta-x-victim").device_id == a.device_id


@pytest.mark.django_db
def test_admin_approve_cannot_issue_the_second_of_the_pair(admin_client, profile) -> None:  # noqa: ANN001
    _legacy(profile)
    a, b = _pair()
    url = reverse("admin:signing_onboardingrequest_changelist")
    for request in (a, b):
        admin_client.post(url, {"action": "approve_selected", "_selected_action": [request.pk]})
        onboarding_requests_sign(ids=[request.pk])
    b.refresh_from_db()
    assert b.status == "failed"
    assert _issued_cns() == [("sta-x-victim", a.device_id)]


@pytest.mark.django_db
def test_the_approve_command_cannot_issue_the_second_of_the_pair(profile) -> None:  # noqa: ANN001
    _legacy(profile)
    a, b = _pair()
    call_command("approve_requests", str(b.pk))
    onboarding_requests_sign(ids=[b.pk])
    call_command("approve_requests", str(a.pk))
    onboarding_requests_sign(ids=[a.pk])
    a.refresh_from_db()
    assert a.status == "failed"
    assert _issued_cns() == [("sta-x-victim", b.device_id)]


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_cn_issue_one_certificate(profile) -> None:  # noqa: ANN001
    _legacy(profile)
    a, b = _pair()
    onboarding_requests_approve(ids=[a.pk, b.pk])
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time; the race is run on PostgreSQL.")
    barrier = threading.Barrier(2)
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def worker(pk: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[pk] = onboarding_requests_sign(ids=[pk]).issued
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(pk,)) for pk in (a.pk, b.pk)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(results.values()) == [0, 1]
    assert len(_issued_cns()) == 1
    owner = CommonNameOwner.objects.get(common_name="sta-x-victim").device_id
    assert _issued_cns()[0][1] == owner


@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_a_certificate_row_whose_cn_another_device_owns(profile) -> None:  # noqa: ANN001
    if connection.vendor != "postgresql":
        pytest.skip("The (CN, device) foreign key exists on PostgreSQL.")
    _legacy(profile)
    a, b = _pair()
    onboarding_requests_approve(ids=[a.pk])
    onboarding_requests_sign(ids=[a.pk])
    cert = IssuedCertificate.objects.get(request=a)
    cert.pk = None
    cert.request = b
    cert.device_id = b.device_id
    cert.serial, cert.fingerprint_sha256 = "00", "00"
    with pytest.raises(IntegrityError), transaction.atomic():
        cert.save()


@pytest.mark.django_db
def test_a_renewal_overlaps_the_old_certificate_under_the_same_cn(profile, station_token) -> None:  # noqa: ANN001
    station, _ = station_token
    first, _ = onboarding_request_submit(station=station, device_name="d1", csr=make_ec_csr())
    onboarding_requests_approve(ids=[first.pk])
    onboarding_requests_sign(ids=[first.pk])
    # an approved renewal as the renewal path leaves it (its proof is checked at submission)
    valid = csr_validate(make_ec_csr())
    renewal = OnboardingRequest.objects.create(
        station=station,
        device=first.device,
        profile=profile,
        csr_pem=valid.pem,
        key_type=valid.key_type,
        public_key_fingerprint=valid.public_key_fingerprint,
        is_renewal=True,
        status="approved",
    )
    onboarding_requests_sign(ids=[renewal.pk])
    active = IssuedCertificate.objects.filter(common_name="st-001:d1", status="active")
    assert active.count() == 2


@pytest.mark.django_db
def test_one_public_key_for_two_devices_is_refused(client, profile, station_token) -> None:  # noqa: ANN001
    _, token = station_token
    _, other_token = station_create(name="st-other")
    csr = make_ec_csr()
    first = post(client, token, "d1", csr)
    assert first.status_code == 201
    again = post(client, token, "d1", csr)  # the same device retrying: idempotent
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    for tok, device in ((token, "d2"), (other_token, "d1")):
        refused = post(client, tok, device, csr)
        assert refused.status_code == 422
        assert refused.json()["code"] == "public_key_in_use"
        assert "another device" in refused.json()["detail"]
    # still refused once the first device's certificate is issued and active
    onboarding_requests_approve(ids=[first.json()["id"]])
    onboarding_requests_sign(ids=[first.json()["id"]])
    assert post(client, other_token, "d9", csr).json()["code"] == "public_key_in_use"
    assert OnboardingRequest.objects.count() == 1


@pytest.mark.django_db
def test_the_approval_queue_shows_each_cn_without_a_query_per_row(
    admin_client,  # noqa: ANN001
    profile,  # noqa: ANN001
    station_token,  # noqa: ANN001
    django_assert_max_num_queries,  # noqa: ANN001
) -> None:
    station, _ = station_token
    url = reverse("admin:signing_onboardingrequest_changelist")
    onboarding_request_submit(station=station, device_name="d0", csr=make_ec_csr())
    with django_assert_max_num_queries(40) as one:
        admin_client.get(url)
    for i in range(1, 15):
        onboarding_request_submit(station=station, device_name=f"d{i}", csr=make_ec_csr())
    with django_assert_max_num_queries(len(one.captured_queries)) as many:
        page = admin_client.get(url)
    assert len(many.captured_queries) == len(one.captured_queries)
    assert b"st-001:d14" in page.content
    assert b"Certificate CN" in page.content
