"""Enrolment codes: made by add_station, the admin action or the CSV import, shown once,
stored hashed, exchanged once for the station token, expiring, rate limited."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from devices.enrollment import ALPHABET, code_hash, enrollment_code_create, enrollment_redeem
from devices.models import EnrollmentAttempt, EnrollmentCode, Station
from portal.models import AuditEvent
from tests.devices.factories import make_station

URL = "/api/v1/enrollment"
CHANGELIST = "/admin/devices/station/"


def _enroll(client: Client, code: str, addr: str = "10.0.0.1"):  # noqa: ANN202
    return client.post(URL, {"code": code}, content_type="application/json", REMOTE_ADDR=addr)


@pytest.mark.django_db
def test_add_station_prints_a_code_that_enrols_once(client: Client) -> None:
    out = StringIO()
    call_command("add_station", "st-enrol", "--enrollment-code", stdout=out)
    code = out.getvalue().strip().splitlines()[-1]
    raw = code.replace("-", "")
    assert len(raw) == 12
    assert set(raw) <= set(ALPHABET)
    row = EnrollmentCode.objects.get(station__name="st-enrol")
    assert row.code_hash == code_hash(code)
    assert raw not in row.code_hash
    assert row.expires_at - row.created_at == timedelta(days=7)
    # Typed in lower case without dashes, it is the same code.
    response = _enroll(client, raw.lower())
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["station"] == "st-enrol"
    assert response["Cache-Control"] == "no-store"
    token = body["token"]
    config = client.get("/api/v1/agent/config", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert config.status_code == 200
    again = _enroll(client, code)
    assert again.status_code == 409
    assert again.json()["code"] == "enrollment_code_used"
    assert token not in again.content.decode()
    # Neither the code nor the token in the audit trail.
    trail = " ".join(str(e.detail) + e.object_repr for e in AuditEvent.objects.all())
    assert raw not in trail
    assert token not in trail
    assert AuditEvent.objects.filter(action="station_enroll").count() == 1


@pytest.mark.django_db
def test_enrolment_replaces_the_station_token(client: Client) -> None:
    station, old_token = make_station("st-old")
    code = enrollment_code_create(station=station)
    token = _enroll(client, code).json()["token"]
    assert token != old_token
    old = client.get("/api/v1/agent/config", HTTP_AUTHORIZATION=f"Bearer {old_token}")
    assert old.status_code == 401


@pytest.mark.django_db
def test_unknown_malformed_expired_and_superseded_codes_are_refused(client: Client) -> None:
    station, _ = make_station("st-x")
    unknown = _enroll(client, "AAAA-BBBB-CCCC")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "enrollment_code_invalid")
    malformed = _enroll(client, "0O1I")
    assert (malformed.status_code, malformed.json()["code"]) == (422, "enrollment_code_invalid")
    first = enrollment_code_create(station=station)
    second = enrollment_code_create(station=station)  # ends the first
    ended = _enroll(client, first)
    assert (ended.status_code, ended.json()["code"]) == (409, "enrollment_code_expired")
    EnrollmentCode.objects.filter(code_hash=code_hash(second)).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    expired = _enroll(client, second)
    assert (expired.status_code, expired.json()["code"]) == (409, "enrollment_code_expired")
    assert _enroll(client, "").status_code == 422


@pytest.mark.django_db
@override_settings(ENROLLMENT_RATE_PER_ADDRESS=3, ENROLLMENT_RATE_GLOBAL=5)
def test_wrong_codes_are_rate_limited_per_address_and_in_all(client: Client) -> None:
    station, _ = make_station("st-rate")
    good = enrollment_code_create(station=station)
    for _ in range(3):
        assert _enroll(client, "AAAA-BBBB-CCCC", "10.0.0.9").status_code == 404
    limited = _enroll(client, good, "10.0.0.9")  # even a good code from that address waits
    assert limited.status_code == 429
    assert limited.json()["code"] == "enrollment_rate_limited"
    assert int(limited["Retry-After"]) > 0
    assert _enroll(client, "AAAA-BBBB-CCCD", "10.0.0.10").status_code == 404
    assert _enroll(client, "AAAA-BBBB-CCCE", "10.0.0.11").status_code == 404
    assert _enroll(client, good, "10.0.0.12").status_code == 429  # the global limit
    assert EnrollmentAttempt.objects.count() == 5
    EnrollmentAttempt.objects.update(at=timezone.now() - timedelta(hours=1))
    assert _enroll(client, good, "10.0.0.12").status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent transactions")
def test_two_concurrent_uses_of_one_code_one_wins() -> None:
    station, _ = make_station("st-race")
    code = enrollment_code_create(station=station)
    results: list[str] = []
    barrier = threading.Barrier(2)

    def use() -> None:
        barrier.wait()
        try:
            enrollment_redeem(code=code, address="10.0.0.1")
            results.append("won")
        except Exception as exc:  # noqa: BLE001
            results.append(getattr(exc, "code", type(exc).__name__))
        finally:
            connection.close()

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["enrollment_code_used", "won"]


@pytest.mark.django_db
def test_admin_action_and_csv_import_show_codes_once(client: Client, superuser) -> None:  # noqa: ANN001
    client.force_login(superuser)
    make_station("st-a")
    make_station("st-b")
    ids = list(Station.objects.values_list("pk", flat=True))
    page = client.post(CHANGELIST, {"action": "create_enrollment_codes", "_selected_action": ids})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    codes = page.context["codes"]
    assert [s.name for s, _ in codes] == ["st-a", "st-b"]
    for _station, code in codes:
        assert code in page.content.decode()
        assert EnrollmentCode.objects.filter(code_hash=code_hash(code)).exists()
    upload = SimpleUploadedFile("s.csv", b"name,site\nst-c,Berlin\nst-d,Paris\n")
    page = client.post(f"{CHANGELIST}import-csv/", {"file": upload, "enrollment_codes": "on"})
    assert page.status_code == 200
    imported = page.context["codes"]
    assert [s.name for s, _ in imported] == ["st-c", "st-d"]
    assert _enroll(Client(), imported[0][1]).json()["station"] == "st-c"
    # Later pages never show a code again.
    change = client.get(f"{CHANGELIST}{imported[1][0].pk}/change/").content.decode()
    assert imported[1][1] not in change
